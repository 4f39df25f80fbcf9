"""Studies: one GA run (or amalgamation run) = one Optuna study in an Optuna storage."""
