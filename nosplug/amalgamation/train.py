"""Meta-training: teachers and student in lockstep, truncated unrolls, curriculum (spec §4, §5).

One *problem instance* starts from a fresh optimizee, runs a shared warm-up (SGD 0.05) that also
feeds every optimizer's state, then the student and each teacher follow their own trajectories
on the same minibatches for ``depth`` truncations of ``unroll`` steps. After each truncation the
student's weights φ take one meta-Adam step on L = L_meta + α·reduce(distances) with adaptive
gradient clipping; teacher trajectories carry on, never re-synchronised (spec §4.2).

Random scaling (Lv et al.): the student works in θ' = θ/s with s = exp(U(−3, 3)) per coordinate;
teachers see the true gradient and parameters; distances are measured in θ' (spec §4.2).
Perturbations of φ: ``random`` (σ·RMS(φ) Gaussian noise redrawn at every use, eq. 5) and
``adversarial`` (one clipped ascent step ψ = clip(∇ψL, ε‖φ‖) per tensor, the reference's
``cgd``, then the meta-gradient at φ + ψ).

The curriculum (spec §4.4) is a list of stages ``depths``; each stage runs periods of
``instances`` problem instances, validates after each period (α = 0, a fixed seed, the next
stage's horizon) and checkpoints; a stage ends after ``min_periods`` once its best period is
``patience`` periods old (or after ``max_periods``) and the stage's best checkpoint is reloaded.
Whether a period blew up and is redone is decided by :mod:`nosplug.amalgamation.run`; every
attempt of a period draws its own random stream (see :meth:`MetaTrainer.period`), so a redone
period sees new problem instances, minibatches and perturbations.

Devices: everything trains on the trainer's ``device`` (the problem's data moved there once, the
optimizee, the student, the teachers' states). Every random draw (minibatch indices, the scaling,
the perturbation noise) comes from a CPU generator and is then moved, so a seeded run draws the
same numbers on every device and results differ between devices only by float rounding.
Checkpoints (:meth:`MetaTrainer.state_dict`) hold CPU tensors and load onto any device.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from nosplug.amalgamation.losses import AmalgamationLoss, alpha_schedule, log_distance, meta_term
from nosplug.amalgamation.problems import FlatModel, Problem, device_data, new_instance
from nosplug.amalgamation.student import learned_state
from nosplug.amalgamation.teachers import Teacher


@dataclass
class MetaConfig:
    """Meta-training settings; defaults are the paper's (spec §4)."""

    unroll: int = 100
    warmup_steps: int = 100
    warmups: tuple[int, ...] = ()  # warm-up steps per stage; empty: warmup_steps in every stage
    warmup_lr: float = 0.05
    depths: tuple[int, ...] = (1, 2, 5, 10)
    val_depths: tuple[int, ...] = (2, 5, 10, 20)
    alphas: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02)
    instances: int = 10
    val_instances: int = 10
    val_seed: int = 12345
    min_periods: int = 5
    patience: int = 5
    max_periods: int = 20
    max_repeats: int = 4
    blowup: float = 0.5
    meta_lr: float = 1e-3
    clip: float = 0.1
    second_order: bool = False
    random_scaling: bool = True
    perturbation: str = "none"  # none | random | adversarial
    sigma: float = 5e-4  # relative std of random perturbations
    epsilon: float = 1e-3  # relative size of adversarial steps

    def warmup_at(self, stage: int) -> int:
        """Warm-up steps of a problem instance in ``stage`` (the last entry of ``warmups`` repeats).

        Per stage because the choice optimizer's training has none in its first period (spec §4.6)."""
        if not self.warmups:
            return self.warmup_steps
        return self.warmups[min(stage, len(self.warmups) - 1)]


@dataclass
class Trajectory:
    theta: Tensor
    state: Any


@dataclass
class TruncationResult:
    loss: Tensor
    meta: float
    imitation: float
    student: Trajectory
    teachers: list[Trajectory]
    diverged: bool = False
    diverged_loss: float = math.nan  # the non-finite optimizee loss that stopped the unroll


@dataclass
class TeacherPath:
    """The teachers' trajectories over one truncation: their parameters after every step
    (``thetas[i]`` stacks the K teachers, scaled coordinates) and where they end."""

    thetas: list[Tensor]
    final: list[Trajectory]


def perturbed(
    params: dict[str, Tensor], sigma: float, gen: torch.Generator | None = None
) -> dict[str, Tensor]:
    """φ + N(0, σ²·RMS(φ)²) per tensor (eq. 5), fresh noise at every call, drawn from ``gen``
    (the period's noise stream, a CPU generator) or the global generator, on the CPU and then
    moved to φ's device: the same noise on every device."""
    out = {}
    for k, p in params.items():
        rms = torch.sqrt((p.detach().pow(2) + 1e-8).mean())
        noise = torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
        out[k] = p + sigma * rms * noise
    return out


def adaptive_clip_(module: nn.Module, clip: float) -> None:
    """Brock et al. 2021, per tensor: scale G down to clip·max(‖W‖, 1e-3) if it is longer."""
    for p in module.parameters():
        if p.grad is None:
            continue
        limit = clip * max(float(p.detach().norm()), 1e-3)
        norm = float(p.grad.norm())
        if norm > limit:
            p.grad.mul_(limit / norm)


class Unroller:
    """Runs truncations of one problem instance for a learned optimizer and its teachers, on
    ``device`` (default: where ``learned`` lives)."""

    def __init__(
        self,
        learned: nn.Module,
        teachers: list[Teacher],
        loss: AmalgamationLoss,
        cfg: MetaConfig,
        problem: Problem,
        data_seed: int = 0,
        device: torch.device | str | None = None,
    ) -> None:
        self.learned, self.teachers, self.loss, self.cfg, self.problem = learned, teachers, loss, cfg, problem
        self.device = torch.device(device) if device is not None else _module_device(learned)
        data = device_data(problem.dataset, data_seed, self.device)
        self.x, self.y = data.train_x, data.train_y

    # -- one problem instance --------------------------------------------------------------
    def start(
        self, seed: int, gen: torch.Generator, warmup: int | None = None
    ) -> tuple[FlatModel, Tensor, Trajectory, list[Trajectory]]:
        """Fresh optimizee, scaling, shared warm-up of ``warmup`` steps (default
        ``cfg.warmup_steps``); returns (model, scale, student, teachers).

        Every optimizer learns the model's layout (the rank of each coordinate's tensor) here,
        the student and a learned teacher alike, so a choice optimizer sees the same rank
        features as a student and as a teacher."""
        model = new_instance(self.problem, seed, self.device)
        theta = model.vector()
        n = theta.numel()
        if self.cfg.random_scaling:  # drawn on the CPU (the run's stream), then moved
            s = torch.exp(torch.empty(n).uniform_(-3, 3, generator=gen)).to(self.device)
        else:
            s = torch.ones(n, device=self.device)
        tp = theta / s
        ranks = model.ranks()
        st = learned_state(self.learned, tp, ranks)
        tstates = [t.init_layout(theta, ranks) for t in self.teachers]
        steps = self.cfg.warmup_steps if warmup is None else warmup
        with torch.no_grad():
            for _ in range(steps):
                x, y = self._batch(gen)
                with torch.enable_grad():
                    tv = tp.detach().requires_grad_(True)
                    g = torch.autograd.grad(model.loss(tv * s, x, y), tv)[0]
                _, st = self.learned(g, st, frozen=True)
                for i, t in enumerate(self.teachers):
                    tstates[i] = t.warmup(g / s, tstates[i], tp * s)
                tp = tp - self.cfg.warmup_lr * g
        student = Trajectory(tp.detach(), st)
        teachers = [Trajectory(tp.detach().clone(), ts) for ts in tstates]
        return model, s, student, teachers

    def _batch(self, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """A minibatch: indices drawn from the CPU stream ``gen``, gathered on the data's device."""
        idx = torch.randint(0, len(self.y), (self.problem.batch_size,), generator=gen)
        idx = idx.to(self.device)
        return self.x[idx], self.y[idx]

    def batches(self, gen: torch.Generator) -> list[tuple[Tensor, Tensor]]:
        return [self._batch(gen) for _ in range(self.cfg.unroll)]

    # -- one truncation ------------------------------------------------------------------
    def teacher_path(
        self, model: FlatModel, s: Tensor, teachers: list[Trajectory], batches: list[tuple[Tensor, Tensor]]
    ) -> TeacherPath:
        """Step every teacher once per batch: true gradient at its true parameters, its update
        mapped back to the scaled coordinates (spec §4.2); a non-finite update is skipped.

        A teacher is a constant w.r.t. φ and never looks at the student, so its trajectory over a
        truncation depends only on its own state and the batches. Computing it once and handing
        it to every pass over the truncation (the adversarial probe and the real pass) is why a
        teacher sees each step exactly once, however many passes there are. It is also the cheap
        choice: a snapshot/restore of teacher state instead would have to deep-copy arbitrary
        ``torch.optim`` state and would repeat K teacher gradients per step in every pass.
        """
        thetas = [t.theta for t in teachers]
        states = [t.state for t in teachers]
        path: list[Tensor] = []
        with torch.no_grad():
            for x, y in batches:
                for k, t in enumerate(self.teachers[: len(teachers)]):
                    with torch.enable_grad():
                        tt = (thetas[k] * s).requires_grad_(True)
                        gt = torch.autograd.grad(model.loss(tt, x, y), tt)[0]
                    d_t, ts_new = t.step(gt, states[k], tt.detach())
                    if torch.isfinite(d_t).all():
                        thetas[k], states[k] = thetas[k] - d_t / s, ts_new
                if thetas:
                    path.append(torch.stack(thetas))
        return TeacherPath(path, [Trajectory(a, b) for a, b in zip(thetas, states)])

    def truncation(
        self,
        model: FlatModel,
        s: Tensor,
        student: Trajectory,
        teachers: list[Trajectory],
        batches: list[tuple[Tensor, Tensor]],
        alpha: float,
        params: dict[str, Tensor],
        *,
        train: bool,
        noise: float = 0.0,
        noise_gen: torch.Generator | None = None,
        path: TeacherPath | None = None,
    ) -> TruncationResult:
        """One truncation of the student against the teachers' ``path`` (computed here if not
        given; pass the same path to several passes over one truncation)."""
        cfg = self.cfg
        if path is None:
            path = self.teacher_path(model, s, teachers, batches)
        theta0 = student.theta.detach()
        theta = theta0.requires_grad_(True) if train else theta0
        st = student.state
        metas: list[Tensor] = []
        dists: list[Tensor] = []
        diverged, diverged_loss = False, math.nan
        for i, (x, y) in enumerate(batches):
            with torch.enable_grad():
                tv = theta if train else theta.detach().requires_grad_(True)
                loss_i = model.loss(tv * s, x, y)
                if not torch.isfinite(loss_i):
                    diverged, diverged_loss = True, float(loss_i.detach())
                    break
                if i > 0:
                    with torch.no_grad():
                        ref = model.loss(theta0 * s, x, y)
                    metas.append(meta_term(loss_i if train else loss_i.detach(), ref))
                g = torch.autograd.grad(
                    loss_i, tv, create_graph=train and cfg.second_order, retain_graph=train
                )[0]
            p = perturbed(params, noise, noise_gen) if noise else params
            if train:
                delta, st_new = torch.func.functional_call(self.learned, p, (g, st))
            else:
                with torch.no_grad():
                    delta, st_new = torch.func.functional_call(self.learned, p, (g.detach(), st))
            if torch.isfinite(delta).all():  # NaN guard: skip the step, keep the state
                theta, st = theta - delta, st_new
            if path.thetas and alpha > 0:
                dists.append(log_distance(theta, path.thetas[i]))
        meta = torch.stack(metas).mean() if metas else theta.new_zeros(())
        imit = self.loss.reduce(torch.stack(dists, dim=1)) if dists else theta.new_zeros(())
        total = meta + alpha * imit
        new_student = Trajectory(theta.detach(), _detach(st))
        return TruncationResult(
            total,
            float(meta.detach()),
            float(imit.detach()),
            new_student,
            path.final,
            diverged,
            diverged_loss,
        )


def _module_device(module: nn.Module) -> torch.device:
    """Where ``module``'s weights are (the CPU for a module without any)."""
    return next(iter(module.parameters()), torch.empty(0)).device


def _cpu(value: Any) -> Any:
    """``value`` with every tensor on the CPU (nested dicts and lists), for device-independent
    checkpoints."""
    if isinstance(value, Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cpu(v) for v in value)
    return value


def _detach(state: Any) -> Any:
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {k: _detach(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_detach(v) for v in state]
    return state


@dataclass
class PeriodResult:
    train_loss: float
    val_loss: float
    meta_steps: int
    diverged_instances: int = 0
    history: list[float] = field(default_factory=list)


class MetaTrainer:
    """Meta-trains ``learned`` on ``problem``; one call of :meth:`period` is one curriculum period.

    ``device`` (default: where ``learned`` is) is where everything trains; ``learned`` is moved
    there before the meta-optimizer is built on its weights."""

    def __init__(
        self,
        learned: nn.Module,
        teachers: list[Teacher],
        loss: AmalgamationLoss,
        cfg: MetaConfig,
        problem: Problem,
        seed: int = 0,
        device: torch.device | str | None = None,
    ) -> None:
        self.device = torch.device(device) if device is not None else _module_device(learned)
        self.learned, self.cfg = learned.to(self.device), cfg
        self.unroller = Unroller(self.learned, teachers, loss, cfg, problem, device=self.device)
        self.meta_opt = torch.optim.Adam(learned.parameters(), lr=cfg.meta_lr, eps=1e-7)
        self.seed = seed
        self.noise_gen = torch.Generator().manual_seed(seed)

    def _params(self) -> dict[str, Tensor]:
        return dict(self.learned.named_parameters())

    def _period_seeds(self, stage: int, period: int, attempt: int) -> list[int]:
        """Seeds of one attempt at a period: [batches and scaling, noise, instance 1, ...].

        Derived from (run seed, stage, period, attempt) rather than carried over from the
        previous period, so a period redone after a blow-up (same weights, next attempt) draws new
        instances, minibatches and perturbations, and a resumed run draws exactly what an
        uninterrupted one would."""
        words = np.random.SeedSequence([self.seed, stage, period, attempt]).generate_state(
            2 + self.cfg.instances
        )
        return [int(w) for w in words]

    def period(
        self,
        stage: int,
        *,
        period: int = 0,
        attempt: int = 0,
        on_step: Callable[[int, float], None] | None = None,
    ) -> PeriodResult:
        """Train ``cfg.instances`` problem instances of the stage's depth, then validate."""
        cfg = self.cfg
        depth = cfg.depths[min(stage, len(cfg.depths) - 1)]
        alpha = alpha_schedule(stage, cfg.alphas)
        data_seed, noise_seed, *instance_seeds = self._period_seeds(stage, period, attempt)
        gen = torch.Generator().manual_seed(data_seed)
        self.noise_gen.manual_seed(noise_seed)
        losses, steps, diverged = [], 0, 0
        for seed in instance_seeds:
            model, s, student, teachers = self.unroller.start(seed, gen, cfg.warmup_at(stage))
            for _ in range(depth):
                batches = self.unroller.batches(gen)
                res = self._meta_step(model, s, student, teachers, batches, alpha)
                student, teachers = res.student, res.teachers
                losses.append(float(res.loss.detach()))
                steps += 1
                if on_step:
                    on_step(steps, float(res.loss.detach()))
                if res.diverged:
                    diverged += 1
                    break
        val = self.validate(stage)
        return PeriodResult(sum(losses) / max(1, len(losses)), val, steps, diverged, losses)

    def _meta_step(self, model, s, student, teachers, batches, alpha) -> TruncationResult:
        cfg = self.cfg
        params = self._params()
        noise = cfg.sigma if cfg.perturbation == "random" else 0.0
        path = self.unroller.teacher_path(model, s, teachers, batches)  # shared by probe and real pass
        if cfg.perturbation == "adversarial":
            params = self._attacked(model, s, student, teachers, batches, alpha, params, path)
        res = self.unroller.truncation(
            model, s, student, teachers, batches, alpha, params, train=True, noise=noise,
            noise_gen=self.noise_gen, path=path,
        )  # fmt: skip
        self.meta_opt.zero_grad()
        if res.loss.requires_grad and torch.isfinite(res.loss):
            res.loss.backward()
            adaptive_clip_(self.learned, cfg.clip)
            self.meta_opt.step()
        return res

    def _attacked(self, model, s, student, teachers, batches, alpha, params, path) -> dict[str, Tensor]:
        """φ + ψ with ψ one clipped ascent step on the truncation's training loss (the reference's
        ``cgd``): per tensor clip_by_norm(∇ψL, ε‖φ‖), so zero-norm tensors do not move."""
        cfg = self.cfg
        psi = {k: torch.zeros_like(p, requires_grad=True) for k, p in params.items()}
        attacked = {k: p.detach() + psi[k] for k, p in params.items()}
        probe = self.unroller.truncation(
            model, s, student, teachers, batches, alpha, attacked, train=True, path=path
        )
        grads = torch.autograd.grad(probe.loss, list(psi.values()), allow_unused=True)
        shifted = {}
        for (k, p), gr in zip(params.items(), grads):
            step = torch.zeros_like(p) if gr is None else gr
            limit = cfg.epsilon * float(p.detach().norm())
            norm = float(step.norm())
            if norm > limit:
                step = step * (limit / norm) if limit > 0 else torch.zeros_like(step)
            shifted[k] = p + step.detach()
        return shifted

    def validate(self, stage: int) -> float:
        """Mean meta loss over fixed-seed instances with the next stage's horizon, α = 0.

        Non-finite when the student's optimizee loss becomes non-finite on any instance: that
        period blew up, and the caller must see it rather than a stand-in number."""
        cfg = self.cfg
        depth = cfg.val_depths[min(stage, len(cfg.val_depths) - 1)]
        gen = torch.Generator().manual_seed(cfg.val_seed)
        total, count = 0.0, 0
        params = {k: p.detach() for k, p in self._params().items()}
        noise = cfg.sigma if cfg.perturbation == "random" else 0.0  # the reference keeps noise on here
        for k in range(cfg.val_instances):
            model, s, student, _teachers = self.unroller.start(cfg.val_seed + k, gen)
            for _ in range(depth):
                res = self.unroller.truncation(
                    model, s, student, [], self.unroller.batches(gen), 0.0, params, train=False,
                    noise=noise, noise_gen=self.noise_gen,
                )  # fmt: skip
                if res.diverged:
                    return res.diverged_loss  # inf or nan: the meta loss log M(θ) is the same
                if not math.isfinite(res.meta):
                    return res.meta
                student = res.student
                total += res.meta
                count += 1
        return total / max(1, count)

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Student weights and meta-optimizer, as CPU tensors (a checkpoint loads on any device);
        the random streams need no saving (each period derives its own from the run seed and its
        position, see :meth:`_period_seeds`)."""
        return {
            "learned": {k: v.detach().clone().cpu() for k, v in self.learned.state_dict().items()},
            # a copy: optimizer.state_dict() aliases the live moment tensors, which the next
            # meta-steps update in place (a redone period would restart from the failed try's)
            "meta_opt": _cpu(copy.deepcopy(self.meta_opt.state_dict())),
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` (from any device): weights are copied into the trainer's,
        and torch's optimizer moves the moments to the weights' device."""
        self.learned.load_state_dict(sd["learned"])
        self.meta_opt.load_state_dict(sd["meta_opt"])
