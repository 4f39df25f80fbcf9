"""The base class of errors caused by the user's input (the CLI prints them as one line)."""


class UserError(Exception):
    """Bad input: a malformed file, an unknown name, an impossible value, an unreachable storage."""
