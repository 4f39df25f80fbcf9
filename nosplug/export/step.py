"""The body of the exported optimizer's update: the genome as straight-line multi-tensor code.

It mirrors :meth:`nosplug.optim.program.Program.delta_and_momentum` statement by statement, on
lists of tensors (one per parameter of a chunk) instead of one flat vector:

* EMA slots advance first (``lerp_`` / ``mul_`` + ``addcmul_`` / ``mul_`` + ``add_``, as the program);
* each operand is computed once, then each active node in topological order;
* a decayed edge multiplies its value by the Python float d(t), as the program does;
* a value the same for every element (a constant operand and ops of constants) stays a 0-d
  tensor of the parameters' dtype, exactly as the program keeps it; when it meets a per-parameter
  value in a foreach op it is expanded (a view, no copy) to each parameter's shape;
* per-tensor ops (clip by norm), stochastic ops (dropout) and state-holding ops always receive
  full per-parameter tensors, as the program's ``ctx.full`` gives them;
* the update rule: plain, momentum, or Nesterov (standard or the search code's reference form),
  with the sign flip, and the momentum buffer committed only when the update is finite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nosplug.export.check import ExportError
from nosplug.export.codegen import Names, TemplateError, fill, identifier, placeholders, statement
from nosplug.genome.ids import ROOT
from nosplug.genome.model import Genome
from nosplug.genome.render import fill as render_fill
from nosplug.optim.program import MOMENTUM_KEY, Program, node_state_key
from nosplug.primitives.base import SourceForm, StatefulOp, UnaryOp
from nosplug.primitives.registry import Registry

INDENT = " " * 8
#: Names the update method defines itself; operand and node variables avoid them.
STEP_NAMES = frozenset(
    {"self", "group", "params", "states", "step", "k", "grads", "lr", "mu", "d", "dtype", "device", "rng"}
    | {"delta", "scaled", "buf", "state", "s", "p", "x", "y", "m", "new", "momentum_buffer", "torch", "math"}
)


@dataclass
class _Value:
    name: str
    scalar: bool  # the same for every element: a 0-d tensor


@dataclass
class StepCode:
    """The update method's body, and what the rest of the module must provide for it."""

    lines: list[str] = field(default_factory=list)
    decay_rows: list[int] = field(default_factory=list)  # edge decay index -> row of the decay table


class _Writer:
    def __init__(self, genome: Genome, program: Program, reg: Registry, names: Names, decay_rows: list[int]):
        self.genome, self.program, self.reg, self.names = genome, program, reg, names
        self.decay_rows = decay_rows
        self.lines: list[str] = []
        self._full: dict[str, str] = {}

    def emit(self, code: str) -> None:
        self.lines += statement(code, INDENT)

    def comment(self, text: str) -> None:
        self.lines.append(f"{INDENT}# {text}")

    # -- values ---------------------------------------------------------------------------
    def full(self, v: _Value) -> str:
        """A per-parameter list for ``v``: itself, or a constant expanded (a view) to each shape."""
        if not v.scalar:
            return v.name
        if v.name not in self._full:
            name = self.names.new(f"{v.name}_full")
            self.emit(f"{name} = [{v.name}.expand_as(p) for p in params]")
            self._full[v.name] = name
        return self._full[v.name]

    def apply(self, who: str, src: SourceForm, args: list[_Value], extra: dict[str, str], elementwise: bool):
        """The expression of a node op over ``args`` and whether its value is a constant."""
        try:
            if elementwise and all(a.scalar for a in args) and src.expr:
                return fill(src.expr, {**{str(i): a.name for i, a in enumerate(args)}, **extra}), True
            if src.foreach:
                lists = {
                    str(i): self.full(a) if not elementwise or a.scalar else a.name
                    for i, a in enumerate(args)
                }
                return fill(src.foreach, {**lists, **extra}), False
            return self._loop(src.expr or "", args, extra, elementwise), False
        except TemplateError as exc:
            raise ExportError(f"the source form of {who}: {exc}") from None

    def _loop(self, expr: str, args: list[_Value], extra: dict[str, str], elementwise: bool) -> str:
        """``[expr for x, y in zip(...)]`` over the per-parameter arguments (constants broadcast)."""
        loop_vars = ["x", "y"]
        values: dict[str, str] = {}
        zipped: list[tuple[str, str]] = []
        for i, a in enumerate(args):
            if a.scalar and elementwise:
                values[str(i)] = a.name
            else:
                values[str(i)] = loop_vars[i]
                zipped.append((loop_vars[i], self.full(a)))
        if "state" in extra:
            values["state"] = "s"
            zipped.append(("s", extra["state"]))
        values.update({k: v for k, v in extra.items() if k != "state"})
        return _comprehension(fill(expr, values), zipped)

    # -- sections -------------------------------------------------------------------------
    def ema_slots(self) -> dict[str, str]:
        """Advance every EMA slot the operands read; returns slot key -> list variable."""
        slots: dict[str, str] = {}
        if self.program.ema_specs:
            self.comment("EMA slots, advanced before the operands read them")
        for spec in self.program.ema_specs:
            var = self.names.new(f"ema_g{spec.power}_b{spec.beta!r}")
            slots[spec.key] = var
            self.emit(f'{var} = [s["{spec.key}"] for s in states]')
            if spec.power == 1:
                self.emit(f"torch._foreach_lerp_({var}, grads, 1 - {spec.beta!r})")
            elif spec.power == 2:
                self.emit(f"torch._foreach_mul_({var}, {spec.beta!r})")
                self.emit(f"torch._foreach_addcmul_({var}, grads, grads, value=1 - {spec.beta!r})")
            else:
                self.emit(f"torch._foreach_mul_({var}, {spec.beta!r})")
                power = f"torch._foreach_pow(grads, {spec.power})"
                self.emit(f"torch._foreach_add_({var}, {power}, alpha=1 - {spec.beta!r})")
        return slots

    def operands(self, slots: dict[str, str]) -> list[_Value]:
        values = []
        if self.program.operands:
            self.comment("operands")
        for op in self.program.operands:
            src = op.source
            assert src is not None and src.expr is not None  # check_exportable made sure
            var = self.names.new(_operand_var(op.name, op.text))
            lists = {
                "g": "grads",
                "w": "params",
                **{f"ema{i}": slots[s.key] for i, s in enumerate(op.requires)},
            }
            who = f"operand {op.name!r}"
            try:
                if src.scalar:
                    self.emit(
                        f"{var} = torch.tensor({fill(src.expr, {'step': 'k'})}, dtype=dtype, device=device)"
                    )
                elif src.foreach:
                    self.emit(f"{var} = {fill(src.foreach, {**lists, 'step': 'k'})}")
                else:
                    used = [k for k in lists if k in placeholders(src.expr)]
                    if not used:
                        raise ExportError(
                            f"the source form of {who} reads none of $g, $w, $ema0...; mark it scalar=True"
                        )
                    loop = {k: _loop_var(k) for k in used}
                    body = fill(src.expr, {**loop, "step": "k"})
                    self.emit(f"{var} = {_comprehension(body, [(loop[k], lists[k]) for k in used])}")
            except TemplateError as exc:
                raise ExportError(f"the source form of {who}: {exc}") from None
            values.append(_Value(var, src.scalar))
        return values

    def nodes(self, operands: list[_Value]) -> _Value:
        outs: list[_Value] = []
        order = {n.id: n for n in self.genome.topological_order()}
        self.comment("the update graph, inputs before the nodes that read them")
        for ins in self.program.instructions:
            node = order[ins.node_id]
            var = self.names.new("u" if node.id == ROOT else node.id)
            args: list[_Value] = []
            for i, a in enumerate(ins.args):
                v = operands[a.index] if a.kind == "operand" else outs[a.index]
                if a.decay >= 0:
                    tmp = self.names.new(f"{var}_x{i}")
                    d = f"d[{self.decay_rows[a.decay]}]"
                    self.emit(
                        f"{tmp} = {v.name} * {d}"
                        if v.scalar
                        else f"{tmp} = torch._foreach_mul({v.name}, {d})"
                    )
                    v = _Value(tmp, v.scalar)
                args.append(v)
            outs.append(self._node(node.id, var, node.arity, node.unary, node.binary, args))
        return outs[-1]

    def _node(
        self, node_id: str, var: str, arity: int, unary: str, binary: str, args: list[_Value]
    ) -> _Value:
        if arity == 1 and unary == "identity":
            self.emit(f"{var} = {args[0].name}")
            return _Value(var, args[0].scalar)
        rec = self.reg.unary(unary) if arity == 1 else self.reg.binary(binary)
        src = rec.source
        assert src is not None
        self.comment(f"{var} = {render_fill(rec.text, [(a.name, False) for a in args], latex=False)}")
        extra: dict[str, str] = {}
        elementwise = True
        if isinstance(rec, StatefulOp):
            state = self.names.new(node_state_key(node_id))
            self.emit(f'{state} = [s["{node_state_key(node_id)}"] for s in states]')
            extra, elementwise = {"state": state, "step": "k"}, False
        elif isinstance(rec, UnaryOp) and (rec.needs_ctx or rec.stochastic):
            elementwise = False
            if rec.stochastic:
                extra["rng"] = "rng"
        expr, scalar = self.apply(f"{type(rec).__name__} {rec.name!r}", src, args, extra, elementwise)
        self.emit(f"{var} = {expr}")
        return _Value(var, scalar)

    def update_rule(self, u: _Value) -> None:
        genome = self.genome
        if u.scalar:
            self.comment("U is the same for every element: one value per parameter element")
            self.emit(f"{u.name} = [{u.name}.expand_as(p) for p in params]")
        sign = "lr" if genome.flip else "-lr"
        flip = " (the genome's sign flip: U is added, not subtracted)" if genome.flip else ""
        lr_u = "+ lr * U" if genome.flip else "- lr * U"
        if genome.momentum == "none":
            self.comment(f"the update: w <- w {lr_u}{flip}")
            self.emit(f"delta = torch._foreach_mul({u.name}, {sign})")
        else:
            self.emit(f'momentum_buffer = [s["{MOMENTUM_KEY}"] for s in states]')
            if genome.momentum == "momentum":
                self.comment(f"momentum: m <- mu * m {lr_u}; w <- w + m{flip}")
            elif genome.nesterov == "standard":
                self.comment(f"Nesterov: m <- mu * m {lr_u}; w <- w + mu * m {lr_u}{flip}")
            else:
                self.comment(f"Nesterov, the search code's form: m <- mu * m {lr_u}; w <- w + m {lr_u}{flip}")
            self.emit(f"scaled = torch._foreach_mul({u.name}, {sign})")
            self.emit("buf = torch._foreach_mul(momentum_buffer, mu)")
            self.emit("torch._foreach_add_(buf, scaled)")
            if genome.momentum == "momentum":
                self.emit("delta = buf")
            elif genome.nesterov == "standard":
                self.emit("delta = torch._foreach_mul(buf, mu)")
                self.emit("torch._foreach_add_(delta, scaled)")
            else:
                self.emit("delta = torch._foreach_add(buf, scaled)")
        self.lines += [
            f"{INDENT}for state in states:",
            f'{INDENT}    state["step"] = step + 1',
            f"{INDENT}if not _all_finite(delta):",
            f"{INDENT}    # skip a NaN/inf update: weights and momentum stay (EMA and node state moved on)",
            f"{INDENT}    self.nonfinite_steps += 1",
            f"{INDENT}    self.last_step_nonfinite = True",
            f"{INDENT}    return",
        ]
        if genome.momentum != "none":
            self.lines += [f"{INDENT}for m, new in zip(momentum_buffer, buf):", f"{INDENT}    m.copy_(new)"]
        self.lines.append(f"{INDENT}torch._foreach_add_(params, delta)")


def step_body(
    genome: Genome, program: Program, reg: Registry, names: Names, decay_rows: list[int]
) -> list[str]:
    """The lines of ``_update(self, group, params)``; its local set-up only where the body uses it."""
    w = _Writer(genome, program, reg, names, decay_rows)
    slots = w.ema_slots()
    operands = w.operands(slots)
    w.update_rule(w.nodes(operands))
    body = "\n".join(line.split("#", 1)[0] for line in w.lines)
    head = [
        f"{INDENT}states = [self._state(p) for p in params]",
        f'{INDENT}step = int(states[0]["step"])  # steps already taken: the 0-based index of this one',
    ]
    optional = [
        ("k", "k = step + 1  # the 1-based step number, used by bias corrections"),
        ("grads", "grads = [p.grad for p in params]"),
        ("lr", 'lr = group["lr"]'),
        ("mu", 'mu = group["momentum"]'),
        ("d", "d = self._decays[:, min(step, self.total_steps - 1)].tolist()  # d(t) of each edge"),
        ("dtype", "dtype, device = params[0].dtype, params[0].device"),
        ("rng", "rng = self._rng(params[0].device)"),
    ]
    head += [INDENT + line for name, line in optional if re.search(rf"\b{name}\b", body)]
    return head + w.lines


def _comprehension(body: str, zipped: list[tuple[str, str]]) -> str:
    if len(zipped) == 1:
        return f"[{body} for {zipped[0][0]} in {zipped[0][1]}]"
    targets = ", ".join(v for v, _ in zipped)
    sources = ", ".join(src for _, src in zipped)
    return f"[{body} for {targets} in zip({sources})]"


def _loop_var(placeholder: str) -> str:
    return {"g": "g", "w": "w"}.get(placeholder, f"e{placeholder[3:]}")


def _operand_var(name: str, text: str) -> str:
    """A readable variable for an operand: its name (``v_hat``), or for a family reference its text
    when that is short (``ema(power=2, beta=0.999)`` renders ``v_0.999``), ``c_1e_8`` for a constant,
    else the family and its values (``weight(scale=0.01)`` -> ``weight_0_01``)."""
    if "(" not in name:
        return identifier(name)
    if re.fullmatch(r"[-+0-9.e]+", text):
        return "c_" + identifier(text).removeprefix("x_")
    short = identifier(text)
    return short if not short.startswith("x_") and len(short) <= 24 else identifier(name)
