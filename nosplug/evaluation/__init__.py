"""Evaluation: integrity check, datasets, surrogates, training and early stopping."""
