"""nosplug's version, in a module of its own so that low layers can read it without importing
the package's lazy front (``nosplug/__init__.py``, which reaches every layer)."""

__version__ = "0.1.0"
