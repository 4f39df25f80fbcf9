"""The body of the exported optimizer's update: the genome as straight-line code on a chunk's flat buffers.

The exported module steps parameters as GraphOptimizer does, with GraphOptimizer's own layout code
(:mod:`nosplug.optim.chunks`, embedded in the module): parts of a param group, chunks of at most
``chunk_size`` elements, one workspace of scratch buffers per device and dtype. This module writes
``_update(group, chunk, step, ws, guard)``, one step of the genome on one chunk, mirroring
:meth:`nosplug.optim.program.Program.delta_and_momentum` statement by statement on flat tensors:

* the chunk's gradient (and weights, if read) as flat tensors: views of one parameter, or gathered
  into the workspace with one multi-tensor copy;
* EMA slots advance first (``lerp_`` / ``mul_`` + ``addcmul_`` / ``mul_`` + ``add_``, as the program);
* each operand, then each active node in topological order, written into a workspace buffer by
  the primitive's out form (:attr:`SourceForm.out`); a buffer is reused once its last reader has
  run, so a step allocates nothing. A primitive without an out form evaluates its ``expr`` (a new
  tensor each step);
* a decayed edge multiplies by the float d(t) into a buffer;
* a value the same for every element (constants and ops of constants) is a 0-d CPU tensor of the
  parameters' dtype, as GraphOptimizer keeps it; where it meets a tensor it enters as a 0-d tensor on
  the chunk's device, expanded (a view) to the chunk's size in out forms;
* per-tensor ops (clip by norm) run on each parameter's slice of the chunk; stochastic ops draw
  from the device's generator, once per chunk;
* the update rule: plain, momentum, or Nesterov (standard or the search code's reference form),
  with the sign flip; the guard (``Guard``) commits it only where it is finite.

The arithmetic is GraphOptimizer's exact step's, operation for operation, so on the same chunks
the exported optimizer is bit-identical to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nosplug.export.check import ExportError, templates
from nosplug.export.codegen import Names, TemplateError, fill, identifier, placeholders, statement
from nosplug.genome.ids import ROOT
from nosplug.genome.model import Genome
from nosplug.genome.render import fill as render_fill
from nosplug.optim.lowering import Plan
from nosplug.optim.program import MOMENTUM_KEY, Program, node_state_key
from nosplug.primitives.base import SourceForm, StatefulOp, UnaryOp
from nosplug.primitives.registry import Registry

INDENT = " " * 8
#: Names the update method defines itself; operand and node variables avoid them.
STEP_NAMES = frozenset(
    {"self", "group", "chunk", "step", "ws", "guard", "k", "lr", "mu", "d", "dtype", "rng", "g", "w"}
    | {"scaled", "nxt", "delta", "momentum_buffer", "x", "o", "t", "torch", "math", "float", "zip"}
)


@dataclass
class _Value:
    """A value of the update: a flat tensor (``buf``: the workspace buffer it lives in, None for
    an alias of the gradient, weights, state or a freshly allocated result) or a constant
    (``const``: a 0-d CPU tensor ``name``, or only the Python number ``literal``)."""

    name: str
    const: bool = False
    buf: str | None = None
    literal: str | None = None
    device: str | None = None  # the 0-d device tensor of a constant, once made
    label: str = "c"  # what to call a constant's variables


@dataclass
class StepCode:
    """The update method's body, and what the rest of the module must provide for it."""

    lines: list[str] = field(default_factory=list)
    decay_rows: list[int] = field(default_factory=list)  # edge decay index -> row of the decay table


class _Writer:
    def __init__(
        self, genome: Genome, program: Program, reg: Registry, names: Names, decay_rows: list[int], plan: Plan
    ):
        self.genome, self.program, self.reg, self.names, self.plan = genome, program, reg, names, plan
        self.decay_rows = decay_rows
        self.lines: list[str] = []
        self._free: list[str] = []
        self._buffers = 0
        self._refs: dict[str, int] = {}

    def emit(self, code: str) -> None:
        for line in code.split("\n"):
            self.lines += statement(line, INDENT)

    def comment(self, text: str) -> None:
        self.lines.append(f"{INDENT}# {text}")

    # -- workspace buffers ------------------------------------------------------------------
    def take(self, exclude: set[str] = frozenset()) -> str:  # type: ignore[assignment]
        """A free workspace buffer not in ``exclude`` (a new one if none is free)."""
        for b in sorted(self._free, key=lambda n: int(n[1:])):
            if b not in exclude:
                self._free.remove(b)
                return b
        self._buffers += 1
        return f"b{self._buffers - 1}"

    def bind(self, wanted: str, buf: str) -> str:
        """A variable for workspace buffer ``buf`` (cut to the chunk's size)."""
        var = self.names.new(wanted)
        self.emit(f'{var} = chunk.scratch(ws, "{buf}")')
        return var

    def hold(self, v: _Value) -> None:
        if v.buf is not None:
            self._refs[v.buf] = self._refs.get(v.buf, 0) + 1

    def drop(self, v: _Value) -> None:
        if v.buf is not None:
            self._refs[v.buf] -= 1
            if self._refs[v.buf] == 0:
                self._free.append(v.buf)

    # -- constants ----------------------------------------------------------------------------
    def cpu(self, v: _Value) -> str:
        """The constant as a 0-d CPU tensor of the parameters' dtype."""
        if not v.name:
            v.name = self.names.new(v.label)
            self.emit(f"{v.name} = torch.tensor({v.literal}, dtype=g.dtype)")
        return v.name

    def on_device(self, v: _Value) -> str:
        """The constant as a 0-d tensor on the chunk's device (made once per step and value)."""
        if v.device is None:
            v.device = self.names.new(f"{v.name or v.label}_d")
            value = v.literal if v.literal is not None else f"float({v.name})"
            self.emit(f"{v.device} = self._constant({value}, g)")
        return v.device

    def full(self, v: _Value) -> str:
        """A flat tensor of the chunk's size for ``v``: itself, or a constant expanded (a view)."""
        return f"{self.on_device(v)}.expand_as(g)" if v.const else v.name

    # -- sections -------------------------------------------------------------------------
    def ema_slots(self) -> dict[str, str]:
        """Advance every EMA slot the operands read; returns slot key -> variable."""
        slots: dict[str, str] = {}
        if self.program.ema_specs:
            self.comment("EMA slots, advanced before the operands read them")
        for spec in self.program.ema_specs:
            var = self.names.new(f"ema_g{spec.power}_b{spec.beta!r}")
            slots[spec.key] = var
            self.emit(f'{var} = chunk.state["{spec.key}"]')
            if spec.power == 1:
                self.emit(f"{var}.lerp_(g, 1 - {spec.beta!r})")
            elif spec.power == 2:
                self.emit(f"{var}.mul_({spec.beta!r}).addcmul_(g, g, value=1 - {spec.beta!r})")
            else:
                buf = self.take()
                gp = self.bind(f"g{spec.power}", buf)
                self.emit(f"torch.pow(g, {spec.power}, out={gp})")
                self.emit(f"{var}.mul_({spec.beta!r}).add_({gp}, alpha=1 - {spec.beta!r})")
                self._free.append(buf)
        return slots

    def operands(self, slots: dict[str, str]) -> list[_Value]:
        values = []
        if any(not _alias(op.source) for op in self.program.operands):
            self.comment("operands")
        for op in self.program.operands:
            src = op.source
            assert src is not None and src.expr is not None  # check_exportable made sure
            who = f"operand {op.name!r}"
            lists = {"g": "g", "w": "w", **{f"ema{i}": slots[s.key] for i, s in enumerate(op.requires)}}
            wanted = _operand_var(op.name, op.text)
            try:
                if src.scalar:
                    values.append(_Value("", const=True, literal=fill(src.expr, {"step": "k"}), label=wanted))
                    continue
                if _alias(src):  # the gradient, weights or an EMA itself
                    values.append(_Value(lists[src.expr.strip()[1:]]))
                    continue
                if src.out:
                    buf = self.take()
                    var = self.bind(wanted, buf)
                    tmp = self.take({buf}) if "$tmp" in src.out else None
                    tvar = self.bind(f"{var}_tmp", tmp) if tmp else ""
                    self.emit(fill(src.out, {**lists, "step": "k", "out": var, "tmp": tvar}))
                    if tmp:
                        self._free.append(tmp)
                    values.append(_Value(var, buf=buf))
                else:
                    var = self.names.new(wanted)
                    self.emit(f"{var} = {fill(src.expr, {**lists, 'step': 'k'})}")
                    values.append(_Value(var))
            except TemplateError as exc:
                raise ExportError(f"the source form of {who}: {exc}") from None
            self.hold(values[-1])
        return values

    def nodes(self, operands: list[_Value]) -> _Value:
        program = self.program
        order = {n.id: n for n in self.genome.topological_order()}
        # readers left per value, to free a buffer after its last one
        left: dict[tuple[str, int], int] = {}
        for ins in program.instructions:
            for a in ins.args:
                key = (a.kind, a.index)
                left[key] = left.get(key, 0) + 1
        for i, v in enumerate(operands):
            if left.get(("operand", i), 0) == 0:
                self.drop(v)
        outs: list[_Value] = []
        if any(not (ins.identity and all(a.decay < 0 for a in ins.args)) for ins in program.instructions):
            self.comment("the update graph, inputs before the nodes that read them")
        for j, ins in enumerate(program.instructions):
            node = order[ins.node_id]
            var = "u" if node.id == ROOT else node.id
            args: list[_Value] = []
            temps: list[_Value] = []
            readers = [(a.kind, a.index) for a in ins.args]
            last = [  # the value's last reader is this node (and it reads it once): its buffer is free after
                left[key] == 1
                and readers.count(key) == 1
                and self._owns(operands[key[1]] if key[0] == "operand" else outs[key[1]])
                for key in readers
            ]
            for i, a in enumerate(ins.args):
                v = operands[a.index] if a.kind == "operand" else outs[a.index]
                if a.decay >= 0:
                    d = f"d[{self.decay_rows[a.decay]}]"
                    if v.const:
                        name = self.names.new(f"{var}_x{i}")
                        self.emit(f"{name} = {self.cpu(v)} * {d}")
                        v = _Value(name, const=True)
                    else:
                        if last[i]:  # scaled in place: nothing reads the value afterwards
                            buf = v.buf
                            name = self.names.new(f"{var}_x{i}")
                            self.emit(f"{name} = {v.name}.mul_({d})")
                        else:
                            buf = self.take()
                            name = self.bind(f"{var}_x{i}", buf)
                            self.emit(f"torch.mul({v.name}, {d}, out={name})")
                        v = _Value(name, buf=buf)
                        self.hold(v)
                        temps.append(v)
                        last[i] = True
                args.append(v)
            nonneg = node.arity == 1 and not args[0].const and self.plan.nonneg_arg(j, 0)
            # a decayed first argument is materialized for this node alone: its out form writes into
            # that buffer ($out may be $0, never $1), as GraphOptimizer's plan materializes into the
            # result's buffer (an undecayed argument is not overwritten: some ops run slower in
            # place, torch.special.i1e 4x on the CPU)
            first = ins.args[0].decay >= 0 and args[0].buf is not None
            reuse = args[0].buf if first and (len(args) == 1 or args[1].buf != args[0].buf) else None
            out = self._node(node.id, var, node.arity, node.unary, node.binary, args, nonneg, reuse)
            self.hold(out)
            outs.append(out)
            for a in ins.args:  # the readers this node was
                key = (a.kind, a.index)
                left[key] -= 1
                if left[key] == 0:
                    self.drop(operands[a.index] if a.kind == "operand" else outs[a.index])
            for v in temps:
                self.drop(v)
            if left.get(("node", j), 0) == 0 and j != len(program.instructions) - 1:
                self.drop(out)
        return outs[-1]

    def _owns(self, v: _Value) -> bool:
        """Whether ``v`` is the only value living in its workspace buffer."""
        return v.buf is not None and self._refs.get(v.buf, 0) == 1

    def _node(
        self,
        node_id: str,
        var: str,
        arity: int,
        unary: str,
        binary: str,
        args: list[_Value],
        nonneg: bool,
        reuse: str | None = None,
    ) -> _Value:
        """The node's value; ``nonneg``: its (unary) argument is known to be +0 or more or NaN;
        ``reuse``: the first argument's buffer, free once this node has read it."""
        if arity == 1 and unary == "identity":
            v = args[0]
            return v
        rec = self.reg.unary(unary) if arity == 1 else self.reg.binary(binary)
        src = rec.source
        assert src is not None
        who = f"{type(rec).__name__} {rec.name!r}"
        shown = [(a.name or a.literal or "c", False) for a in args]
        self.comment(f"{var} = {render_fill(rec.text, shown, latex=False)}")
        stateful = isinstance(rec, StatefulOp)
        stochastic = isinstance(rec, UnaryOp) and rec.stochastic
        per_tensor = isinstance(rec, UnaryOp) and rec.needs_ctx and not rec.stochastic
        extra: dict[str, str] = {"step": "k"}
        if stateful:
            state = self.names.new(node_state_key(node_id))
            self.emit(f'{state} = chunk.state["{node_state_key(node_id)}"]')
            extra["state"] = state
        if stochastic:
            extra["rng"] = "rng"
        out_form = src.out
        if nonneg and src.out_nonneg and not (stateful or stochastic or per_tensor):
            if src.out_nonneg.strip() == "$0":  # the argument itself (|x| of x >= +0)
                self.comment(f"{var} is {args[0].name} itself: every element is +0 or more")
                return args[0]
            out_form = src.out_nonneg
            self.comment(f"(every element of {args[0].name} is +0 or more)")
        try:
            if all(a.const for a in args) and not (stateful or stochastic or per_tensor) and src.expr:
                name = self.names.new(var)  # an op of constants: on the CPU, as GraphOptimizer
                self.emit(f"{name} = {fill(src.expr, {str(i): self.cpu(a) for i, a in enumerate(args)})}")
                return _Value(name, const=True)
            if per_tensor:
                return self._per_tensor(var, src, args[0], extra)
            if out_form:
                exclude = {a.buf for a in args if a.buf}
                buf = reuse or self.take(exclude)
                name = self.bind(var, buf)
                tmp = self.take(exclude | {buf}) if "$tmp" in out_form else None
                tvar = self.bind(f"{name}_tmp", tmp) if tmp else ""
                values = {str(i): self.full(a) for i, a in enumerate(args)}
                self.emit(fill(out_form, {**values, **extra, "out": name, "tmp": tvar}))
                if tmp:
                    self._free.append(tmp)
                return _Value(name, buf=buf)
            name = self.names.new(var)
            if src.expr:
                values = {str(i): (self.on_device(a) if a.const else a.name) for i, a in enumerate(args)}
                if stochastic or stateful:  # they receive full tensors, as the program's ctx.full
                    values = {str(i): self.full(a) for i, a in enumerate(args)}
                self.emit(f"{name} = {fill(src.expr, {**values, **extra})}")
            else:  # only a foreach form: on one-element lists
                lists = {str(i): f"[{self.full(a)}]" for i, a in enumerate(args)}
                if stateful:
                    extra = {**extra, "state": f"[{extra['state']}]"}
                self.emit(f"{name} = {fill(src.foreach or '', {**lists, **extra})}[0]")
            return _Value(name)
        except TemplateError as exc:
            raise ExportError(f"the source form of {who}: {exc}") from None

    def _per_tensor(self, var: str, src: SourceForm, arg: _Value, extra: dict[str, str]) -> _Value:
        """A per-tensor op: each parameter's slice of the chunk in turn, into a workspace buffer."""
        exclude = {arg.buf} if arg.buf else set()
        buf = self.take(exclude)
        name = self.bind(var, buf)
        source = arg.name
        if arg.const:  # the program expands a constant first (ctx.full)
            source = self.bind(f"{var}_in", held := self.take(exclude | {buf}))
            self.emit(f"{source}.copy_({self.full(arg)})")
        else:
            held = None
        template = src.out or src.expr or src.foreach or ""
        if src.out:
            tmp = self.take(exclude | {buf} | ({held} if held else set())) if "$tmp" in src.out else None
            tvar = self.bind(f"{name}_tmp", tmp) if tmp else ""
            zipped = f"zip(chunk.views({source}), chunk.views({name})" + (
                f", chunk.views({tvar}))" if tmp else ")"
            )
            self.lines.append(f"{INDENT}for x, o{', t' if tmp else ''} in {zipped}:")
            for line in fill(template, {"0": "x", "out": "o", "tmp": "t", **extra}).split("\n"):
                self.lines += statement(line, INDENT + "    ")
            if tmp:
                self._free.append(tmp)
        elif src.expr:
            self.lines.append(f"{INDENT}for x, o in zip(chunk.views({source}), chunk.views({name})):")
            self.lines += statement(f"o.copy_({fill(template, {'0': 'x', **extra})})", INDENT + "    ")
        else:
            each = fill(template, {"0": f"chunk.views({source})", **extra})
            self.emit(f"torch._foreach_copy_(chunk.views({name}), {each})")
        if held:
            self._free.append(held)
        return _Value(name, buf=buf)

    def update_rule(self, u: _Value) -> None:
        genome = self.genome
        c = "lr" if genome.flip else "-lr"
        flip = " (the genome's sign flip: U is added, not subtracted)" if genome.flip else ""
        lr_u = "+ lr * U" if genome.flip else "- lr * U"
        if genome.momentum == "none":
            self.comment(f"the update: w <- w {lr_u}{flip}")
        elif genome.momentum == "momentum":
            self.comment(f"momentum: m <- mu * m {lr_u}; w <- w + m{flip}")
        elif genome.nesterov == "standard":
            self.comment(f"Nesterov: m <- mu * m {lr_u}; w <- w + mu * m {lr_u}{flip}")
        else:
            self.comment(f"Nesterov, the search code's form: m <- mu * m {lr_u}; w <- w + m {lr_u}{flip}")
        if u.const:  # U is the same for every element
            self.emit(f'scaled = chunk.scratch(ws, "scaled").fill_(float({self.cpu(u)} * ({c})))')
        elif u.buf is not None:  # a workspace buffer: scaled in place
            self.emit(f"scaled = {u.name}.mul_({c})")
        elif u.name == "g":  # the gradient: in place where it was gathered into the workspace
            fresh = f'torch.mul(g, {c}, out=chunk.scratch(ws, "scaled"))'
            self.emit(f"scaled = g.mul_({c}) if not chunk.single else {fresh}")
        else:
            self.emit(f'scaled = torch.mul({u.name}, {c}, out=chunk.scratch(ws, "scaled"))')
        if genome.momentum == "none":
            self.emit("return guard.commit(chunk, scaled)")
            return
        self.emit(f'momentum_buffer = chunk.state["{MOMENTUM_KEY}"]')
        self.emit('nxt = torch.mul(momentum_buffer, mu, out=chunk.scratch(ws, "next_momentum"))')
        self.emit("nxt.add_(scaled)")
        if genome.momentum == "momentum":
            self.emit("delta = nxt")
        elif genome.nesterov == "standard":
            self.emit('delta = torch.mul(nxt, mu, out=chunk.scratch(ws, "delta"))')
            self.emit("delta.add_(scaled)")
        else:
            self.emit('delta = torch.add(nxt, scaled, out=chunk.scratch(ws, "delta"))')
        self.emit("return guard.commit(chunk, delta, nxt, momentum_buffer)")


def step_body(
    genome: Genome, program: Program, reg: Registry, names: Names, decay_rows: list[int], plan: Plan
) -> list[str]:
    """The lines of ``_update(self, group, chunk, step, ws, guard)``; its local set-up only where
    the body uses it. ``plan``: GraphOptimizer's exact plan of the program, which says which values
    are known to be non-negative (so the export skips the work GraphOptimizer skips)."""
    w = _Writer(genome, program, reg, names, decay_rows, plan)
    slots = w.ema_slots()
    operands = w.operands(slots)
    w.update_rule(w.nodes(operands))
    body = "\n".join(line.split("#", 1)[0] for line in w.lines)
    head = [f'{INDENT}g = chunk.gradient(None if chunk.single else chunk.scratch(ws, "grad"))']
    optional = [
        ("w", 'w = chunk.weight(None if chunk.single else chunk.scratch(ws, "weight"))'),
        ("k", "k = step + 1  # the 1-based step number, used by bias corrections"),
        ("lr", 'lr = group["lr"]'),
        ("mu", 'mu = group["momentum"]'),
        ("d", "d = self._decay_rows[min(step, self.total_steps - 1)]  # d(t) of each decay function"),
        ("rng", "rng = self._rng(g.device)"),
    ]
    head += [INDENT + line for name, line in optional if re.search(rf"\b{name}\b", body)]
    return head + w.lines


def _alias(src: SourceForm | None) -> bool:
    """An operand that is the gradient, the weights or an EMA slot itself, or a constant."""
    if src is None or src.expr is None:
        return False
    return src.scalar or src.expr.strip() in ("$g", "$w", "$ema0")


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


__all__ = ["STEP_NAMES", "StepCode", "placeholders", "step_body", "templates"]
