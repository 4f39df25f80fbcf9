"""Datasets: embedded data, seeded splits, the CIFAR loader on files in the real on-disk format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from nosplug.errors import UserError
from nosplug.tasks.base import Batches, Split
from nosplug.tasks.datasets import Augment, DatasetNotFoundError, load_dataset


def test_mnist5k_is_the_embedded_mnist_subset() -> None:
    d = load_dataset("mnist5k", seed=0, normalize=False)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    # no official test split in the file: a stratified 10 % is held out as the test split
    assert len(d.train_y) + len(d.val_y) + len(d.test_y) == 5000
    assert len(d.val_y) == pytest.approx(500, abs=10) and len(d.test_y) == pytest.approx(500, abs=10)
    x = torch.cat([d.train_x, d.val_x])
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # real MNIST: mostly black background, ~19% ink, a dark border
    assert 0.08 < float(x.mean()) < 0.2
    assert float(x[:, :, 0, :].abs().max()) == 0.0
    assert set(torch.cat([d.train_y, d.val_y]).tolist()) == set(range(10))


def test_digits_is_embedded_too() -> None:
    d = load_dataset("digits", seed=0)
    assert d.input_shape == (1, 8, 8) and len(d.train_y) + len(d.val_y) + len(d.test_y) == 1797


def test_split_is_deterministic_disjoint_and_stratified() -> None:
    a, b, c = (load_dataset("digits", seed=s, normalize=False) for s in (1, 1, 2))
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.val_y, b.val_y)
    assert not torch.equal(a.val_x, c.val_x)
    full = load_dataset("digits", seed=1, normalize=False, val_fraction=0.5)
    rows_train = {tuple(r.flatten().tolist()) for r in a.train_x}
    rows_val = {tuple(r.flatten().tolist()) for r in a.val_x}
    rows_test = {tuple(r.flatten().tolist()) for r in a.test_x}
    # digits has a few duplicate images; the indices themselves are disjoint
    assert (
        len(rows_train & rows_val) <= 3
        and len(rows_train & rows_test) <= 3
        and len(rows_val & rows_test) <= 3
    )
    for part in (a.val_y, a.test_y):  # stratified: 10 % of every class in each held-out split
        counts = torch.bincount(part, minlength=10).float() / torch.bincount(a.train_y, minlength=10).float()
        assert torch.allclose(counts, torch.full((10,), 1 / 8), atol=0.02)
    assert len(full.val_y) == pytest.approx(1797 / 2, abs=10)


def test_normalisation_uses_training_statistics_only() -> None:
    raw = load_dataset("mnist5k", seed=0, normalize=False)
    norm = load_dataset("mnist5k", seed=0)
    mean, std = raw.train_x.mean(), raw.train_x.std()
    assert norm.mean[0] == pytest.approx(float(mean), rel=1e-5)
    assert torch.allclose(norm.val_x, (raw.val_x - mean) / std, atol=1e-5)
    assert float(norm.train_x.mean()) == pytest.approx(0.0, abs=1e-4)


def test_limit_and_bad_arguments() -> None:
    d = load_dataset("mnist5k", seed=0, limit=600)
    assert len(d.train_y) + len(d.val_y) + len(d.test_y) == 600
    with pytest.raises(UserError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.5)
    with pytest.raises(UserError, match=r"unknown dataset 'mnist' \(registered: .*mnist5k"):
        load_dataset("mnist")


def test_missing_cifar_folder_says_where_to_put_the_files(tmp_path: Path, monkeypatch) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-batches-py/ .*" + str(tmp_path)):
        load_dataset("cifar10", root=tmp_path)
    env_root = tmp_path / "env"
    monkeypatch.setenv("NOSPLUG_DATA", str(env_root))
    with pytest.raises(DatasetNotFoundError, match=r"cifar-100-python/ .*" + str(env_root)) as info:
        load_dataset("cifar100")
    assert "--data-root" in str(info.value) and "NOSPLUG_DATA" in str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, UserError)


def _write_pickle(path: Path, obj: dict) -> None:
    """A pickle as the CIFAR python files are: protocol 2, a dict keyed by names ('data', 'labels')
    with a uint8 N x 3072 array (readers load them with ``encoding='latin1'``)."""
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _fake_cifar10(root: Path, per_batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Write CIFAR-10's python layout: data_batch_1..5 and test_batch, uint8 rows of 3072."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        labels[:10] = list(range(10))
        _write_pickle(folder / f"data_batch_{i}", {"batch_label": "x", "data": data, "labels": labels})
        xs.append(data)
        ys += labels
    test = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
    _write_pickle(folder / "test_batch", {"data": test, "labels": [0] * per_batch})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _write_pickle(folder / "batches.meta", {"label_names": names, "num_vis": 3072})
    return np.concatenate(xs), np.array(ys)


def _fake_cifar100(root: Path, n: int) -> tuple[np.ndarray, np.ndarray]:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    fine = [i % 100 for i in range(n)]
    _write_pickle(
        folder / "train", {"data": data, "fine_labels": fine, "coarse_labels": [f // 5 for f in fine]}
    )
    _write_pickle(folder / "test", {"data": data[:10], "fine_labels": fine[:10], "coarse_labels": [0] * 10})
    _write_pickle(
        folder / "meta", {"fine_label_names": [f"c{i}" for i in range(100)], "coarse_label_names": []}
    )
    return data, np.array(fine)


@pytest.fixture
def no_md5_check(monkeypatch):
    """torchvision checks the official files' md5 sums; the test writes its own small files in the
    same format, so only their presence is checked (parsing is torchvision's real code path)."""
    import os

    from nosplug.tasks.vision import import_torchvision

    cifar = import_torchvision("torchvision.datasets.cifar")
    monkeypatch.setattr(cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath))


def _loaded_pixels(d) -> dict[tuple, int]:
    """pixels (as uint8 CHW bytes) -> label, over train and validation."""
    x = torch.cat([d.train_x, d.val_x])
    y = torch.cat([d.train_y, d.val_y])
    px = (x * 255).round().to(torch.uint8).reshape(len(y), -1).numpy()
    return {bytes(r): int(label) for r, label in zip(px, y)}


@pytest.mark.usefixtures("no_md5_check")
def test_cifar10_loader_reads_the_real_on_disk_format(tmp_path: Path) -> None:
    data, labels = _fake_cifar10(tmp_path, per_batch=40)
    d = load_dataset("cifar10", root=tmp_path, normalize=False, seed=3)
    assert d.input_shape == (3, 32, 32) and d.num_classes == 10
    assert len(d.train_y) + len(d.val_y) == 200 and len(d.test_y) == 40  # CIFAR's own test batch
    loaded = _loaded_pixels(d)
    # CIFAR rows are channel-major (1024 R, 1024 G, 1024 B): the same bytes as CHW tensors
    assert loaded == {bytes(r): int(label) for r, label in zip(data, labels)}


@pytest.mark.usefixtures("no_md5_check")
def test_cifar100_loader_reads_fine_labels(tmp_path: Path) -> None:
    data, fine = _fake_cifar100(tmp_path, n=300)
    d = load_dataset("cifar100", root=tmp_path, normalize=False)
    assert d.num_classes == 100 and len(d.train_y) + len(d.val_y) == 300
    assert _loaded_pixels(d) == {bytes(r): int(label) for r, label in zip(data, fine)}


def test_batches_are_reproducible_and_cover_each_epoch() -> None:
    x = torch.arange(50, dtype=torch.float32).view(50, 1, 1, 1)
    y = torch.arange(50)
    a, b = Batches(Split(x, y), 10, seed=4), Batches(Split(x, y), 10, seed=4)
    first = [a.next()[1] for _ in range(5)]
    assert sorted(torch.cat(first).tolist()) == list(range(50))
    assert all(torch.equal(f, b.next()[1]) for f in first)
    second = torch.cat([a.next()[1] for _ in range(5)])
    assert sorted(second.tolist()) == list(range(50)) and not torch.equal(second, torch.cat(first))
    assert not torch.equal(Batches(Split(x, y), 10, seed=5).next()[1], first[0])
    # the iterator is the same stream; leftovers that cannot fill a batch wait for a later epoch
    it = iter(Batches(Split(x, y), 10, seed=4))
    assert all(torch.equal(f, next(it)[1]) for f in first)
    dropped = Batches(Split(x, y), 15, seed=0)
    assert [len(dropped.next()[1]) for _ in range(4)] == [15, 15, 15, 15]


def test_augmentation_is_batched_seeded_and_shape_preserving() -> None:
    x = torch.rand(16, 3, 32, 32)
    aug = Augment.paper()
    a = aug(x, torch.Generator().manual_seed(0))
    b = aug(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)
    flipped = Augment(flip=True)(x, torch.Generator().manual_seed(1))
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(2)) for f, o in zip(flipped, x))
    cut = Augment(cutout=8)(x, torch.Generator().manual_seed(2))
    zeros = (cut == 0).all(dim=1).sum(dim=(1, 2))
    assert (zeros > 0).all() and (zeros <= 64).all() and (zeros == 64).any()  # clipped at borders
    assert torch.equal(cut[cut != 0], x[cut != 0])
    # crops are shifted windows of the reflect-padded image: pad shrinks to H/8 = 1 on 8x8 images
    img = torch.arange(64.0).view(1, 1, 8, 8).repeat(32, 1, 1, 1)
    crop = Augment(pad_crop=4)(img, torch.Generator().manual_seed(3))
    padded = torch.nn.functional.pad(img[:1], (1, 1, 1, 1), mode="reflect")[0, 0]
    windows = [padded[i : i + 8, j : j + 8] for i in range(3) for j in range(3)]
    assert crop.shape == (32, 1, 8, 8)
    assert all(any(torch.equal(c[0], w) for w in windows) for c in crop)
    assert any(not torch.equal(c, img[0]) for c in crop)
    # on 8x8 digits the paper's 8x8 cutout shrinks to 4x4
    small = Augment(cutout=8)(torch.ones(8, 1, 8, 8), torch.Generator().manual_seed(0))
    assert int((small == 0).sum(dim=(1, 2, 3)).max()) == 16
