"""Evaluation presets: the budget of one evaluation (spec §7-8) as configuration.

A preset holds the learning-rate grids, step counts, the schedule, the gates' settings and, for
classification tasks, which surrogate the stage trains. ``paper`` is the evolution phase of the
published code (ConvNet base 48, 800-step sweep runs, 16 000-step final run, validation every 400
steps); ``paper-init`` the initial-population phase (base 32, 8 000 steps, no augmentation).
``quick`` keeps every gate but shrinks the budgets so a candidate is judged in seconds on 2 CPU
cores with MNIST-5k; ``smoke`` is for tests; ``task`` is ``quick`` with the budget the task
suggests (its batch size and step counts), the default for tasks other than classification.

Gate thresholds left at None take the task's defaults, in the task's gate units: absolute
training accuracies for classification (the paper's 25 % / 40 %), fractions of the untrained
model's training loss for loss-based tasks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from nosplug.errors import UserError


@dataclass(frozen=True)
class EvalPreset:
    name: str = "custom"
    # classification tasks: the surrogate this stage trains (other tasks ignore these three)
    surrogate: str = "convnet"
    surrogate_options: dict[str, Any] = field(default_factory=lambda: {"base": 48})
    augment: bool = True
    #: per-stage overrides of the task's options (any task; e.g. a wider model in a later stage)
    task_options: dict[str, Any] = field(default_factory=dict)
    batch_size: int = 128
    # gate 1: pre-screen rates, gate 2: the remaining sweep rates
    prescreen_lrs: tuple[float, ...] = (10.0, 1e-2, 1e-5)
    sweep_lrs: tuple[float, ...] = (1.0, 0.1, 1e-3, 1e-4)
    sweep_steps: int = 800
    sweep_epoch_steps: int = 200
    run_gate: float | None = None  # a sweep run stops when its epoch value is worse than this ...
    run_gate_from_epoch: int = 2  # ... at epoch index >= this
    prescreen_gate: float | None = None  # reject if every pre-screen run's best value is worse
    sweep_gate: float | None = None  # reject if the best of all sweep runs is worse
    final_steps: int = 16000
    final_epoch_steps: int = 400  # validation once per final epoch
    final_floor: float | None = None  # stop (not reject) the final run worse than this ...
    final_floor_from_epoch: int = 4  # ... at epoch index >= this
    schedule_steps: int = 16000  # T of the LR schedule and of the decay functions
    warmup_steps: int = 800
    hold_steps: int = 0
    cycle_momentum: bool = True
    integrity: bool = True
    #: How the sweep trains its rates: one grouped model ("batched"), one model per rate
    #: ("sequential"), or "auto": batched for ConvNets up to base 8, where grouping pays on CPU
    #: (measured in benchmarks/bench_evaluation.py; wider grouped convolutions are slower on CPU).
    sweep_mode: str = "auto"
    #: "bf16" runs the model's forward and loss under bf16 autocast (never the optimizer state)
    precision: str = "fp32"
    #: final runs per evaluation, on as many seeds; fitness: the best value of their mean curve
    seeds: int = 1
    #: settings a config overrode: the ``task`` preset's task budget does not replace them
    overridden: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def __post_init__(self) -> None:
        for f in (
            "batch_size",
            "sweep_steps",
            "sweep_epoch_steps",
            "final_steps",
            "final_epoch_steps",
            "schedule_steps",
            "seeds",
        ):
            if int(getattr(self, f)) <= 0:
                raise UserError(f"preset {self.name!r}: {f} must be positive, got {getattr(self, f)!r}")
        if self.sweep_mode not in ("auto", "batched", "sequential"):
            raise UserError(f"preset {self.name!r}: sweep_mode must be auto, batched or sequential")
        if self.precision not in ("fp32", "bf16"):
            raise UserError(f"preset {self.name!r}: precision must be fp32 or bf16")
        if not self.prescreen_lrs:
            raise UserError(f"preset {self.name!r}: prescreen_lrs must not be empty")
        if any(lr <= 0 for lr in (*self.prescreen_lrs, *self.sweep_lrs)):
            raise UserError(f"preset {self.name!r}: learning rates must be positive")
        if self.warmup_steps + self.hold_steps > self.schedule_steps:
            raise UserError(f"preset {self.name!r}: warmup_steps + hold_steps exceed schedule_steps")

    @property
    def all_lrs(self) -> tuple[float, ...]:
        return (*self.prescreen_lrs, *self.sweep_lrs)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("overridden")
        return out

    def with_overrides(self, overrides: dict[str, Any], where: str = "evaluation") -> EvalPreset:
        known = {f.name: f for f in fields(self) if f.name != "overridden"}
        kw = {}
        for key, value in overrides.items():
            if key not in known:
                raise UserError(
                    f"{where}.{key}: unknown evaluation setting (known: {', '.join(sorted(known))})"
                )
            current = getattr(self, key)
            if current is None and key.endswith(("_gate", "_floor")):
                current = 0.0  # an unset gate takes a number
            if isinstance(current, tuple):
                if not isinstance(value, list | tuple):
                    raise UserError(f"{where}.{key}: expected a list, got {type(value).__name__}")
                value = tuple(float(v) for v in value)
            elif isinstance(current, bool):
                if not isinstance(value, bool):
                    raise UserError(f"{where}.{key}: expected true/false, got {value!r}")
            elif isinstance(current, int | float) and (
                not isinstance(value, int | float) or isinstance(value, bool)
            ):
                raise UserError(f"{where}.{key}: expected a number, got {value!r}")
            elif isinstance(current, dict) and not isinstance(value, dict):
                raise UserError(f"{where}.{key}: expected a table, got {value!r}")
            kw[key] = value
        if kw.get("surrogate", self.surrogate) != self.surrogate and "surrogate_options" not in kw:
            kw["surrogate_options"] = {}  # the old options belong to the old surrogate
        return replace(self, **kw, overridden=self.overridden | set(overrides))


PRESETS: dict[str, EvalPreset] = {
    "paper": EvalPreset(name="paper"),
    "paper-init": EvalPreset(
        name="paper-init",
        surrogate_options={"base": 32},
        augment=False,
        final_steps=8000,
        final_epoch_steps=200,
        schedule_steps=8000,
    ),
    "quick": EvalPreset(
        name="quick",
        surrogate_options={"base": 16, "bn_momentum": 0.1},
        batch_size=64,
        augment=False,
        sweep_steps=60,
        sweep_epoch_steps=20,
        final_steps=400,
        final_epoch_steps=40,
        schedule_steps=800,
        warmup_steps=40,
    ),
    "smoke": EvalPreset(
        name="smoke",
        surrogate_options={"base": 8, "bn_momentum": 0.1},
        batch_size=32,
        augment=False,
        sweep_steps=12,
        sweep_epoch_steps=4,
        final_steps=30,
        final_epoch_steps=10,
        schedule_steps=60,
        warmup_steps=4,
        run_gate_from_epoch=2,
        final_floor_from_epoch=1,
    ),
}


PRESETS["task"] = replace(PRESETS["quick"], name="task")


def get_preset(name_or_preset: str | EvalPreset) -> EvalPreset:
    if isinstance(name_or_preset, EvalPreset):
        return name_or_preset
    try:
        return PRESETS[name_or_preset]
    except KeyError:
        raise UserError(
            f"unknown evaluation preset {name_or_preset!r} (known: {', '.join(PRESETS)})"
        ) from None


def for_task(preset: EvalPreset, task) -> EvalPreset:
    """The preset a task trains with: the ``task`` preset takes the task's suggested budget,
    except for the settings the config overrode (a stage's ``final_steps = 60`` stays 60)."""
    if preset.name != "task" or not task.budget:
        return preset
    budget = {k: (tuple(v) if isinstance(v, list) else v) for k, v in task.budget.items()}
    return replace(preset, **{k: v for k, v in budget.items() if k not in preset.overridden})
