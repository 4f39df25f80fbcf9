"""Search: planners that decide which genomes to evaluate (the particle GA, elimination).

Planners are pure and deterministic; :mod:`nosplug.study` runs them on Optuna storage.
"""
