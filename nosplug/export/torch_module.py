"""Assemble the exported module: docstrings, decay functions, helpers, optimizer, schedule."""

from __future__ import annotations

import ast
import keyword
import re
from collections.abc import Mapping
from typing import Any

from nosplug.export import scaffold
from nosplug.export.check import ExportError, check_exportable, collect_helpers, used_primitives
from nosplug.export.codegen import (
    Names,
    TemplateError,
    camel_case,
    docstring,
    fill,
    mark_long_lines,
    statement,
)
from nosplug.export.step import STEP_NAMES, step_body
from nosplug.genome.graph import DecayGraph, DecayNode
from nosplug.genome.ids import HIDDEN
from nosplug.genome.model import Genome
from nosplug.genome.render import render_decay
from nosplug.optim.chunks import layout_source
from nosplug.optim.lowering import Plan
from nosplug.optim.program import Program, compile_genome
from nosplug.optim.schedules import schedule_source
from nosplug.primitives.registry import Registry
from nosplug.primitives.registry import registry as default_registry


def _layout_names() -> frozenset[str]:
    """The top-level names of the embedded layout code (nosplug.optim.chunks)."""
    tree = ast.parse(layout_source())
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return frozenset(names)


#: Module-level names of every export; a class name or a plugin helper may not take them.
MODULE_NAMES = (
    frozenset(
        {
            "GENOME_HASH",
            "STATE_KEYS",
            "SCHEDULE",
            "SPLIT_TENSORS",
            "WarmupHoldCosine",
            "recommended_scheduler",
        }
        | {"warmup_hold_cosine_factor", "cycled_momentum", "torch", "math"}
    )
    | _layout_names()
)
MIN_TORCH = "2.3"
#: What the module exports besides the optimizer class.
PUBLIC = ("WarmupHoldCosine", "recommended_scheduler")


def default_class_name(genome: Genome) -> str:
    """``opt6`` -> ``Opt6``; a genome without a name is called after its hash."""
    name = genome.meta.get("name") if isinstance(genome.meta, dict) else None
    return camel_case(str(name)) if name else f"Evolved_{genome.canonical_hash()[:8]}"


def to_torch_source(
    genome: Genome,
    *,
    class_name: str | None = None,
    provenance: Mapping[str, Any] | None = None,
    registry: Registry | None = None,
) -> str:
    """The genome as one self-contained Python module (``torch`` and ``math`` only).

    The module defines a ``torch.optim.Optimizer`` subclass ``class_name`` (default: from the
    genome's name) that computes what :class:`~nosplug.GraphOptimizer` computes, the paper's
    schedule as ``WarmupHoldCosine`` and ``recommended_scheduler()``. ``provenance`` (for example
    ``{"study": "quick", "rank": 1, "fitness": 0.91}``) is written into the docstrings.

    Raises:
        ExportError: a primitive the genome uses has no source form (the message names it), or
            ``class_name`` is not a usable Python name.
    """
    reg = registry or default_registry()
    program = compile_genome(genome, reg)
    used = used_primitives(genome, program, reg)
    check_exportable(genome, used)
    name = class_name or default_class_name(genome)
    if (
        not name.isidentifier()
        or keyword.iskeyword(name)
        or name in MODULE_NAMES
        or name.startswith("decay_")
    ):
        raise ExportError(f"class name {name!r} is not a Python identifier free for the export to use")

    decay_funcs, decay_rows = _decay_functions(program.decays, reg)
    taken = set(MODULE_NAMES) | {name} | {f"decay_{i}" for i in range(len(decay_funcs))}
    helpers = collect_helpers(used, taken)
    plan = Plan(program)
    direct = plan.gradient_only and genome.momentum == "none"
    c_sign = plan.gradient_sign * program.sign if direct else None
    helper_names = {n for text in helpers for n in re.findall(r"^def (\w+)", text, re.M)}
    names = Names(STEP_NAMES | taken | helper_names)
    body = step_body(genome, program, reg, names, decay_rows, plan)

    meta = genome.meta if isinstance(genome.meta, dict) else {}
    lr = genome.default_lr
    momentum = genome.default("momentum", 0.9)
    schedule = _schedule(meta)
    info = _Info(genome, program, reg, name, dict(provenance or {}), lr, momentum, schedule, c_sign)

    parts = [
        "\n".join(docstring(info.module_doc(), "")),
        "",
        "import math",  # the schedule's cosine
        "",
        "import torch",
        "",
        "__all__ = [" + ", ".join(f'"{n}"' for n in sorted([name, *PUBLIC])) + "]",
        "",
        "#: nosplug's canonical hash of the genome (equal for genomes that compute the same update).",
        f'GENOME_HASH = "{genome.canonical_hash(reg)}"',
        "#: Per-parameter state slots, named as in nosplug's GraphOptimizer (state dicts move between them).",
        f"STATE_KEYS = {_tuple(program.state_keys())}",
        "#: The schedule the genome was evaluated with (warmup and hold as fractions of total_steps);",
        "#: None: a constant learning rate.",
        f"SCHEDULE = {_dict(schedule)}",
        "#: Whether a parameter may be cut across chunks (not when the genome has per-tensor ops).",
        f"SPLIT_TENSORS = {not program.needs_segments}",
        "",
    ]
    if helpers:
        parts += ["", "# -- helpers of the genome's operations and schedules --", "", ""]
        parts += ["\n\n\n".join(helpers), ""]
    if decay_funcs:
        parts += [
            "",
            "# -- decay functions: d(t) in [0, 1] multiplies the value on one edge of the graph --",
            "",
            "",
        ]
        parts += ["\n\n\n".join(decay_funcs), ""]
    parts += [
        "",
        "# -- parts, chunks, workspace and guard: nosplug's own layout code (nosplug.optim.chunks) --",
        "",
        "",
        layout_source(),
        "",
    ]
    parts += [info.class_source(body)]
    parts += ["", "", "# -- the paper's learning-rate schedule --", "", "", schedule_source()]
    parts += ["", "", scaffold.RECOMMENDED_SCHEDULER]
    source = "\n".join(parts)
    source = re.sub(r"\n{4,}", "\n\n\n", source).rstrip("\n") + "\n"
    source = mark_long_lines(source)
    try:
        compile(source, f"<export of {name}>", "exec")
    except SyntaxError as exc:  # a plugin template that is not valid Python
        raise ExportError(
            f"the exported source is not valid Python ({exc}); check the plugins' source forms"
        ) from None
    return source


# ----------------------------------------------------------------------------- decays
def _decay_functions(decays: list[DecayGraph], reg: Registry) -> tuple[list[str], list[int]]:
    """One function per distinct decay graph, and for each decayed edge its function's row."""
    funcs: list[str] = []
    rows: list[int] = []
    seen: dict[str, int] = {}
    for decay in decays:
        key = decay.canonical(reg)
        if key not in seen:
            seen[key] = len(funcs)
            funcs.append(_decay_function(decay, len(funcs), reg))
        rows.append(seen[key])
    return funcs, rows


def _decay_function(decay: DecayGraph, index: int, reg: Registry) -> str:
    """``def decay_<i>(t, T)``, evaluated like :func:`nosplug.genome.decay.evaluate_decay`."""
    lines: list[str] = []
    values: dict[str, str] = {}

    def source(name: str) -> str:
        if name not in values:
            if name == HIDDEN:
                values[name] = "hidden"
                lines.append(f"    hidden = {node(decay.hidden)}")
            else:
                values[name] = (
                    name if name.isidentifier() and name not in ("t", "T", "hidden") else f"s_{index}"
                )
                expr = _fill(reg.schedule(name).source, {"t": "t", "T": "T"}, f"schedule {name!r}")
                lines.append(f"    {values[name]} = {expr}")
        return values[name]

    def node(n: DecayNode) -> str:
        args = {str(i): source(s) for i, s in enumerate(n.inputs)}
        if n.arity == 1:
            return _fill(reg.decay_unary(n.unary).source, args, f"decay unary op {n.unary!r}")
        return _fill(reg.decay_binary(n.binary).source, args, f"decay binary op {n.binary!r}")

    result = node(decay.out)
    doc = docstring(f"d(t) = {render_decay(decay, reg)}; t is the 0-based step, T = total_steps.", "    ")
    return "\n".join(
        [f"def decay_{index}(t: torch.Tensor, T: int) -> torch.Tensor:", *doc, *lines, f"    return {result}"]
    )


def _fill(src: Any, values: dict[str, str], who: str) -> str:
    try:
        return fill(src.expr, values)
    except TemplateError as exc:
        raise ExportError(f"the source form of {who}: {exc}") from None


# ----------------------------------------------------------------------------- the rest
def _schedule(meta: Mapping[str, Any]) -> dict[str, Any] | None:
    sched = meta.get("schedule")
    if not isinstance(sched, dict) or sched.get("kind") != "warmup_hold_cosine":
        return None
    return {
        "warmup": float(sched.get("warmup", 0.0)),
        "hold": float(sched.get("hold", 0.0)),
        "cycle_momentum": bool(sched.get("cycle_momentum", False)),
    }


def _dict(d: dict[str, Any] | None) -> str:
    """A dict literal as ruff format writes it (double quotes), or None."""
    return "None" if d is None else "{" + ", ".join(f'"{k}": {v!r}' for k, v in d.items()) + "}"


def _tuple(items: list[str]) -> str:
    if not items:
        return "()"
    return "(" + ", ".join(f'"{k}"' for k in items) + ("," if len(items) == 1 else "") + ")"


class _Info:
    """The docstrings: formula, update rule, decays, provenance and usage."""

    def __init__(
        self,
        genome: Genome,
        program: Program,
        reg: Registry,
        name: str,
        provenance: dict[str, Any],
        lr: float,
        momentum: float,
        schedule: dict[str, Any] | None,
        c_sign: float | None = None,
    ) -> None:
        self.genome, self.program, self.reg, self.name = genome, program, reg, name
        self.provenance, self.lr, self.momentum, self.schedule = provenance, lr, momentum, schedule
        self.c_sign = c_sign  # gradient-only genomes without momentum: the update is c_sign * lr * g

    @property
    def meta(self) -> dict[str, Any]:
        return self.genome.meta if isinstance(self.genome.meta, dict) else {}

    def rule(self) -> str:
        g = self.genome
        lr_u = "+ lr * U" if g.flip else "- lr * U"
        if g.momentum == "none":
            text = f"w <- w {lr_u}"
        elif g.momentum == "momentum":
            text = f"m <- mu * m {lr_u};  w <- w + m"
        elif g.nesterov == "standard":
            text = f"m <- mu * m {lr_u};  w <- w + mu * m {lr_u}  (Nesterov)"
        else:
            text = f"m <- mu * m {lr_u};  w <- w + m {lr_u}  (Nesterov, the search code's form)"
        return text + ("  (the genome's sign is flipped)" if g.flip else "")

    def provenance_lines(self) -> list[str]:
        """``key: value`` lines: the hash, the genome's description and source, then ``provenance``."""
        lines = [f"genome hash: {self.genome.canonical_hash(self.reg)} (nosplug's canonical hash)"]
        for key in ("description", "source"):
            if self.meta.get(key):
                lines.append(f"{key}: {' '.join(str(self.meta[key]).split())}")
        for key, value in self.provenance.items():
            shown = f"{value:.6g}" if isinstance(value, float) else " ".join(str(value).split())
            lines.append(f"{' '.join(str(key).split())}: {shown}")
        return lines

    def module_doc(self) -> str:
        title = self.meta.get("name") or self.genome.canonical_hash(self.reg)
        steps = ", total_steps=10_000" if self.program.decays else ""
        sched = (
            "sched = recommended_scheduler(opt, total_steps=10_000)  # the schedule it was evaluated with"
            if self.schedule
            else "sched = WarmupHoldCosine(opt, total_steps=10_000, warmup_steps=500)  # optional"
        )
        lines = [
            f"{self.name}: the nosplug genome {title} as a plain PyTorch optimizer (no nosplug needed).",
            "",
            f"    U = {self.genome.formula(self.reg)}",
            f"    {self.rule()}",
            "",
            "Provenance:",
            "",
            *[f"    {line}" for line in self.provenance_lines()],
            "",
            "Use::",
            "",
            f"    opt = {self.name}(model.parameters(), lr={self.lr!r}{steps})",
            f"    {sched}",
            "    for x, y in data:",
            "        opt.zero_grad()",
            "        loss_fn(model(x), y).backward()",
            "        opt.step()",
            "        sched.step()",
            "",
            "Generated by ``nosplug genome export``. Needs Python >= 3.10 and torch >= " + MIN_TORCH + ".",
        ]
        return "\n".join(lines)

    def class_doc(self) -> str:
        g, p = self.genome, self.program
        lines = [
            f"{self.name}: U = {g.formula(self.reg)}",
            "",
            "Per parameter w with gradient g, at the scheduled learning rate lr"
            + (" and momentum mu:" if g.momentum != "none" else ":"),
            "",
            f"    {self.rule()}",
            "",
        ]
        if p.operands:
            note = " (EMA slots advance before they are read; bias corrections use the 1-based step)"
            lines += ["Operands" + (note if p.ema_specs else "") + ":", ""]
            lines += [f"    {op.text}: {op.description or op.name}" for op in p.operands]
            lines += [""]
        if p.decays:
            lines += [
                "Decay functions: [d](x) multiplies x by d(t) in [0, 1], where t is the step and",
                "T = total_steps; on a linear path d acts as a learned learning-rate schedule.",
                "",
            ]
        lines += [
            "Parameters are stepped as nosplug's GraphOptimizer steps them: the parameters of a param",
            "group that have a gradient and share device, dtype and step count (a part) keep their",
            "state in flat buffers, and the update runs on chunks of at most ``chunk_size`` elements",
            "with the scratch buffers of one chunk (the workspace), so a step allocates nothing.",
            "",
            "Non-finite updates: if the update of a chunk contains a NaN or inf, that chunk is not",
            "changed in this step: the weights and the momentum buffer stay, while the EMA slots and the",
            "state of state-holding nodes have already seen the gradient, and the step counts. This is",
            'GraphOptimizer\'s nonfinite="skip"; the skips are counted in ``nonfinite_steps``, and',
            "``last_step_nonfinite`` tells whether the last ``step()`` skipped anything. On an",
            "accelerator the check stays on the device and a step reads it back once, at its end.",
            "",
            "Args:",
            "    params: parameters or param-group dicts, as for any torch.optim.Optimizer.",
            f"    lr: the peak learning rate (default: {self.lr!r}, the genome's).",
        ]
        if g.momentum != "none":
            mu = self.momentum
            lines.append(
                f"    momentum: the momentum coefficient mu (default {mu!r}); a scheduler may cycle it."
            )
        if p.decays:
            lines.append(
                "    total_steps: the length of the run; the decay functions depend on t / total_steps."
            )
        if p.stochastic:
            lines.append(
                "    seed: seeds the generators of the dropout nodes, one per device (the random stream of"
                " GraphOptimizer's seed); None uses torch's global generator."
            )
        lines.append(
            "    chunk_size: elements per chunk (default: 2**22 on the CPU, 10**7 on accelerators, as"
            " GraphOptimizer's)."
        )
        return "\n".join(lines)

    def signature(self) -> str:
        g, p = self.genome, self.program
        args = ["self", "params", f"lr: float = {self.lr!r}"]
        if g.momentum != "none":
            args.append(f"momentum: float = {self.momentum!r}")
        kw = []
        if p.decays:
            kw.append("total_steps: int")
        if p.stochastic:
            kw.append("seed: int | None = None")
        kw.append("chunk_size: int | None = None")
        args += ["*", *kw]
        one = f"    def __init__({', '.join(args)}) -> None:"
        if len(one) <= 110:
            return one
        return "\n".join(["    def __init__(", *[f"        {a}," for a in args], "    ) -> None:"])

    def class_source(self, body: list[str]) -> str:
        g, p = self.genome, self.program
        direct = self.c_sign is not None
        init = [
            self.signature(),
            "        if lr < 0:",
            '            raise ValueError(f"invalid learning rate: {lr}")',
        ]
        if p.decays:
            n = len({d.canonical(self.reg) for d in p.decays})
            calls = ", ".join(f"decay_{i}(t, T)" for i in range(n))
            init += [
                "        if total_steps <= 0:",
                '            raise ValueError(f"total_steps must be positive, got {total_steps}")',
                "        self.total_steps = T = int(total_steps)",
                "        t = torch.arange(T, dtype=torch.float64)",
                "        #: d(t) of each decay function at each step t (one list per step), computed once",
                *statement(f"self._decay_rows = torch.stack([{calls}]).t().tolist()", " " * 8),
            ]
        if p.stochastic:
            init += [
                "        self._seed = seed",
                "        self._generators: dict[torch.device, torch.Generator] = {}",
            ]
        if self.c_sign is not None:
            init.append(
                "        self._checks: dict = {}  # the direct step's gradient check buffers, per device"
            )
        init += [
            "        self.chunk_size = chunk_size",
            "        #: how many times a chunk skipped its update because it was not finite",
            "        self.nonfinite_steps = 0",
            "        self.last_step_nonfinite = False",
            "        self._parts: dict = {}  # group index -> (params, which had no gradient, parts)",
            "        self._workspaces: dict = {}  # (device, dtype) -> Workspace",
            "        self._constants: dict = {}  # (value, dtype, device) -> 0-d tensor",
            "        super().__init__(params, "
            + ('{"lr": lr, "momentum": momentum})' if g.momentum != "none" else '{"lr": lr})'),
        ]
        update = [
            "",
            "    def _update(self, group: dict, chunk: Chunk, step: int, ws: Workspace, guard: Guard):",
            '        """One step of the genome on a chunk: its parameters as flat tensors, end to end."""',
            *body,
        ]
        return "\n".join(
            [
                f"class {self.name}(torch.optim.Optimizer):",
                *docstring(self.class_doc(), "    "),
                "",
                *init,
                "",
                scaffold.STEP.format(direct=scaffold.DIRECT_LINE if direct else "").rstrip("\n"),
                *([scaffold.DIRECT.format(c_sign=self.c_sign).rstrip("\n")] if direct else []),
                *([scaffold.RNG.rstrip("\n")] if p.stochastic else []),
                *update,
            ]
        )
