"""Optimizer references: the one parser for the strings that name an optimizer.

Benchmark contenders, amalgamation teachers and the command line all name optimizers with the
same strings, parsed here into an :class:`OptimizerRef`; what a *bare* name means is up to the
reader (a zoo genome for a contender, a registered teacher rule for a teacher)::

    adam                          bare name (zoo genome / teacher rule), or a genome file path
    adam(lr=0.01)                 bare name with arguments
    study:NAME   study:NAME#3     the (3rd) best genome of a search, as evaluated
    genome:opt6(total_steps=500)  a genome by zoo name or file (teachers)
    torch:SGD(momentum=0.9, nesterov=True)
                                  a class of torch.optim, short for torch.optim:SGD(...)
    pytorch_optimizer:Lion(betas=(0.9, 0.99))
                                  any importable torch.optim.Optimizer class, module:Class(...)
    student:PATH  pretrained:NAME a saved or shipped amalgamation student

Arguments are keyword arguments with Python literal values, read by :func:`ast.literal_eval`:
numbers, strings, booleans, None, tuples, lists and dicts (``betas=(0.9, 0.999)``). ``true``,
``false`` and ``none`` in any case are accepted for the TOML habit. Anything else (a positional
argument, a variable name, an expression) is one error line naming the reference.

This module imports nothing of nosplug but its errors and no torch: it sits low, under every
layer that names optimizers.
"""

from __future__ import annotations

import ast
import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nosplug.errors import UserError

#: Prefixes with a meaning of their own; any other ``prefix:`` is a module path.
PREFIXES = ("study", "genome", "student", "pretrained", "torch")
#: ``torch:Name`` is short for this module.
TORCH_OPTIM = "torch.optim"
_NAMED_LITERALS = {"true": True, "false": False, "none": None}
_CALL = re.compile(r"^(?P<head>[^()]*)(?:\((?P<args>.*)\))?$", re.S)
_MODULE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_IDENT = re.compile(r"^[A-Za-z_][\w]*$")


class RefError(ValueError, UserError):
    """An optimizer reference that cannot be parsed or resolved; the message names it."""


@dataclass(frozen=True)
class OptimizerRef:
    """A parsed optimizer reference (see the module docstring).

    Attributes:
        text: the reference as written.
        kind: ``bare`` | ``class`` | ``study`` | ``genome`` | ``student`` | ``pretrained``.
        target: the bare name or path; the study name; the genome name or file; the student's
            path or name; for ``class`` the module path (``torch.optim`` for ``torch:``).
        name: the class name (``class`` only).
        rank: which best genome of a study (``study`` only; 1 is the best).
        kwargs: the keyword arguments, as Python values.
    """

    text: str
    kind: str
    target: str
    name: str = ""
    rank: int = 1
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_torch(self) -> bool:
        """A class of ``torch.optim`` itself."""
        return self.kind == "class" and self.target == TORCH_OPTIM

    @property
    def class_path(self) -> str:
        """``module:Class`` of a class reference (``torch.optim:Adam`` for ``torch:Adam``)."""
        return f"{self.target}:{self.name}"

    def without_args(self) -> str:
        """The reference with its argument list removed."""
        return self.text.split("(", 1)[0].strip()

    def error(self, problem: str) -> RefError:
        """One error line about this reference."""
        return RefError(f"{self.text!r}: {problem}")

    def import_class(self) -> type:
        """The optimizer class a ``class`` reference names: imported, and checked to be a
        ``torch.optim.Optimizer`` subclass (one error line naming the reference otherwise)."""
        if self.kind != "class":
            raise self.error("does not name an optimizer class (module:Class)")
        try:
            module = importlib.import_module(self.target)
        except ImportError as exc:
            hint = f" (pip install {self.target.split('.')[0].replace('_', '-')}?)" if self.target else ""
            raise self.error(f"cannot import module {self.target!r}: {exc}{hint}") from None
        cls = getattr(module, self.name, None)
        if cls is None:
            where = "torch.optim" if self.is_torch else f"module {self.target!r}"
            raise self.error(f"{where} has no optimizer {self.name!r}")
        import torch

        if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
            raise self.error(f"{self.class_path} is not a torch.optim.Optimizer subclass")
        return cls


def parse_ref(text: str) -> OptimizerRef:
    """Parse an optimizer reference (see the module docstring); one error line when malformed."""
    if not isinstance(text, str) or not text.strip():
        raise RefError(
            f"an optimizer reference is a non-empty string such as 'adam' or 'torch:Adam', got {text!r}"
        )
    text = text.strip()
    m = _CALL.match(text)
    if m is None:
        raise RefError(f"{text!r}: expected NAME or NAME(key=value, ...) with the arguments at the end")
    head = m.group("head").strip()
    kwargs = _arguments(text, m.group("args"))
    if not head:
        raise RefError(f"{text!r}: no name before the arguments")
    prefix, sep, rest = head.partition(":")
    if not sep:
        return OptimizerRef(text, "bare", head, kwargs=kwargs)
    prefix, rest = prefix.strip(), rest.strip()
    if not rest:
        raise RefError(f"{text!r}: nothing after {prefix + ':'!r}")
    if prefix == "study":
        name, hash_, rank = rest.partition("#")
        if hash_ and not (rank.isdigit() and int(rank) >= 1):
            raise RefError(f"{text!r}: the rank after '#' is a positive integer (study:NAME#2)")
        return OptimizerRef(text, "study", name.strip(), rank=int(rank) if hash_ else 1, kwargs=kwargs)
    if prefix in ("genome", "student", "pretrained"):
        return OptimizerRef(text, prefix, rest, kwargs=kwargs)
    module = TORCH_OPTIM if prefix == "torch" else prefix
    if not _MODULE.match(module):
        known = ", ".join(PREFIXES)
        raise RefError(f"{text!r}: {prefix!r} is not a module path (module:Class, or one of {known})")
    if not _IDENT.match(rest):
        raise RefError(f"{text!r}: {rest!r} is not a class name")
    return OptimizerRef(text, "class", module, name=rest, kwargs=kwargs)


def _arguments(text: str, args: str | None) -> dict[str, Any]:
    """``key=value, ...`` as a dict of Python literals."""
    if args is None or not args.strip():
        return {}
    try:
        call = ast.parse(f"f({args})", mode="eval").body
    except SyntaxError:
        raise RefError(f"{text!r}: the arguments are not key=value pairs of Python literals") from None
    if not isinstance(call, ast.Call) or call.args:
        raise RefError(f"{text!r}: arguments are given by name (key=value), not by position")
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            raise RefError(f"{text!r}: '**' is not an argument; write key=value")
        try:
            out[kw.arg] = ast.literal_eval(_named_literals(kw.value))
        except (ValueError, TypeError, SyntaxError):
            shown = ast.unparse(kw.value)
            raise RefError(
                f"{text!r}: {kw.arg}={shown} is not a Python literal (a number, string, True/False, None, "
                "tuple, list or dict)"
            ) from None
    return out


def _named_literals(node: ast.expr) -> ast.expr:
    """``true`` / ``false`` / ``none`` (any case) as constants, wherever they stand."""

    class Swap(ast.NodeTransformer):
        def visit_Name(self, n: ast.Name) -> ast.AST:
            key = n.id.lower()
            return ast.Constant(_NAMED_LITERALS[key]) if key in _NAMED_LITERALS else n

    return Swap().visit(node)
