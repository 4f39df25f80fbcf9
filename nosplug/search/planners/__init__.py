"""Search planners: given what a search has evaluated, which genomes to evaluate next.

Each planner is a pure function of the study's seed and its stored results (see
:mod:`nosplug.study.plan`), so any number of workers, a crash or a resume plan the same work.
"""
