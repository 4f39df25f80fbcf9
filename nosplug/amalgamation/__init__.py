"""Optimizer amalgamation: distil a pool of teacher optimizers into one learned optimizer.

``nosplug.amalgamation.load(path, params)`` returns a trained student as a torch optimizer.
"""

from nosplug.amalgamation.student import StudentOptimizer, load, save

__all__ = ["StudentOptimizer", "load", "save"]
