"""Export a genome as plain PyTorch source: an optimizer for projects that never install nosplug.

::

    from nosplug.export import to_torch_source
    source = to_torch_source(nosplug.zoo.load("opt6"), provenance={"study": "quick", "fitness": 0.9})
    Path("opt6.py").write_text(source)   # imports only torch and math

The module defines a ``torch.optim.Optimizer`` subclass that computes what
:class:`~nosplug.GraphOptimizer` computes (tests/test_export.py checks it step for step on every
zoo genome and hundreds of random ones), the paper's warmup-hold-cosine schedule with cycled
momentum, and the genome's formula and provenance in its docstrings. Every primitive the genome
uses must have a source form (:class:`nosplug.primitives.base.SourceForm`, a field of its record);
otherwise :class:`ExportError` names it. See docs/export.md.
"""

from nosplug.export.check import ExportError
from nosplug.export.torch_module import default_class_name, to_torch_source

__all__ = ["ExportError", "default_class_name", "to_torch_source"]
