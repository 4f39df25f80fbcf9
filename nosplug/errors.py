"""Error classes the CLI turns into one line and a non-zero exit status."""


class UserError(Exception):
    """Bad input: a malformed file, an unknown name, an impossible value, an unreachable storage.

    The CLI prints the message as one line and exits with :attr:`exit_code`.
    """

    exit_code = 2


class EvaluationCrashError(RuntimeError):
    """An evaluation raised (a bug in nosplug or a plugin, a lost device) and kept raising after
    its retries. This is never a verdict on the candidate, so the worker stops instead of
    recording a rejection; the CLI prints the message as one line and exits with status 1."""

    exit_code = 1
