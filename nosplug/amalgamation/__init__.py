"""Optimizer amalgamation: distil a pool of teacher optimizers into one learned optimizer.

``nosplug.amalgamation.load(path, params)`` returns a trained student as a torch optimizer;
``nosplug.amalgamation.pretrained(name, params)`` one of the students shipped with the package
(``pretrained_names()`` lists them).
"""

from nosplug.amalgamation.student import StudentOptimizer, load, save
from nosplug.amalgamation.zoo import pretrained, pretrained_info, pretrained_names

__all__ = ["StudentOptimizer", "load", "pretrained", "pretrained_info", "pretrained_names", "save"]
