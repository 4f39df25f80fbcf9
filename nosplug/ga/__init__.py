"""The genetic search: planners that decide which genomes to evaluate (particle GA, elimination).

Planners are pure and deterministic; :mod:`nosplug.study` runs them on Optuna storage.
"""
