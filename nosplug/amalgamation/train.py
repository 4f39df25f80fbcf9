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
A period whose validation loss blows up (> ref + 0.5·|ref|) is redone from the previous
checkpoint, at most 4 times.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from nosplug.amalgamation.losses import AmalgamationLoss, alpha_schedule, log_distance, meta_term
from nosplug.amalgamation.problems import FlatModel, Problem, new_instance, problem_data
from nosplug.amalgamation.teachers import Teacher


@dataclass
class MetaConfig:
    """Meta-training settings; defaults are the paper's (spec §4)."""

    unroll: int = 100
    warmup_steps: int = 100
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


def perturbed(params: dict[str, Tensor], sigma: float) -> dict[str, Tensor]:
    """φ + N(0, σ²·RMS(φ)²) per tensor (eq. 5), fresh noise at every call."""
    out = {}
    for k, p in params.items():
        rms = torch.sqrt((p.detach().pow(2) + 1e-8).mean())
        out[k] = p + sigma * rms * torch.randn_like(p)
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
    """Runs truncations of one problem instance for a learned optimizer and its teachers."""

    def __init__(
        self,
        learned: nn.Module,
        teachers: list[Teacher],
        loss: AmalgamationLoss,
        cfg: MetaConfig,
        problem: Problem,
        data_seed: int = 0,
    ) -> None:
        self.learned, self.teachers, self.loss, self.cfg, self.problem = learned, teachers, loss, cfg, problem
        data = problem_data(problem.dataset, data_seed)
        self.x, self.y = data.train_x, data.train_y

    # -- one problem instance --------------------------------------------------------------
    def start(
        self, seed: int, gen: torch.Generator
    ) -> tuple[FlatModel, Tensor, Trajectory, list[Trajectory]]:
        """Fresh optimizee, scaling, shared warm-up; returns (model, scale, student, teachers)."""
        model = new_instance(self.problem, seed)
        theta = model.vector()
        n = theta.numel()
        if self.cfg.random_scaling:
            s = torch.exp(torch.empty(n).uniform_(-3, 3, generator=gen))
        else:
            s = torch.ones(n)
        tp = theta / s
        st = self.learned.init_state(n, tp)
        if "rank" in st:
            st["rank"] = model.ranks()
        tstates = [t.init(theta) for t in self.teachers]
        with torch.no_grad():
            for _ in range(self.cfg.warmup_steps):
                x, y = self._batch(gen)
                with torch.enable_grad():
                    tv = tp.detach().requires_grad_(True)
                    g = torch.autograd.grad(model.loss(tv * s, x, y), tv)[0]
                _, st = self.learned(g, st, frozen=True)
                for i, t in enumerate(self.teachers):
                    _, tstates[i] = t.step(g / s, tstates[i], tp * s)
                tp = tp - self.cfg.warmup_lr * g
        student = Trajectory(tp.detach(), st)
        teachers = [Trajectory(tp.detach().clone(), ts) for ts in tstates]
        return model, s, student, teachers

    def _batch(self, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        idx = torch.randint(0, len(self.y), (self.problem.batch_size,), generator=gen)
        return self.x[idx], self.y[idx]

    def batches(self, gen: torch.Generator) -> list[tuple[Tensor, Tensor]]:
        return [self._batch(gen) for _ in range(self.cfg.unroll)]

    # -- one truncation ------------------------------------------------------------------
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
    ) -> TruncationResult:
        cfg = self.cfg
        theta0 = student.theta.detach()
        theta = theta0.requires_grad_(True) if train else theta0
        st = student.state
        metas: list[Tensor] = []
        dists: list[Tensor] = []
        t_thetas = [t.theta for t in teachers]
        t_states = [t.state for t in teachers]
        diverged = False
        for i, (x, y) in enumerate(batches):
            with torch.enable_grad():
                tv = theta if train else theta.detach().requires_grad_(True)
                loss_i = model.loss(tv * s, x, y)
                if not torch.isfinite(loss_i):
                    diverged = True
                    break
                if i > 0:
                    with torch.no_grad():
                        ref = model.loss(theta0 * s, x, y)
                    metas.append(meta_term(loss_i if train else loss_i.detach(), ref))
                g = torch.autograd.grad(
                    loss_i, tv, create_graph=train and cfg.second_order, retain_graph=train
                )[0]
            p = perturbed(params, noise) if noise else params
            if train:
                delta, st_new = torch.func.functional_call(self.learned, p, (g, st))
            else:
                with torch.no_grad():
                    delta, st_new = torch.func.functional_call(self.learned, p, (g.detach(), st))
            if torch.isfinite(delta).all():  # NaN guard: skip the step, keep the state
                theta, st = theta - delta, st_new
            # teachers: true gradient at true parameters, step mapped back to scaled coordinates
            with torch.no_grad():
                for k, t in enumerate(self.teachers[: len(teachers)]):
                    with torch.enable_grad():
                        tt = (t_thetas[k] * s).requires_grad_(True)
                        gt = torch.autograd.grad(model.loss(tt, x, y), tt)[0]
                    d_t, ts_new = t.step(gt, t_states[k], tt.detach())
                    if torch.isfinite(d_t).all():
                        t_thetas[k], t_states[k] = t_thetas[k] - d_t / s, ts_new
            if teachers and alpha > 0:
                dists.append(log_distance(theta, torch.stack(t_thetas)))
        meta = torch.stack(metas).mean() if metas else theta.new_zeros(())
        imit = self.loss.reduce(torch.stack(dists, dim=1)) if dists else theta.new_zeros(())
        total = meta + alpha * imit
        new_student = Trajectory(theta.detach(), _detach(st))
        new_teachers = [Trajectory(a, b) for a, b in zip(t_thetas, t_states)]
        return TruncationResult(
            total, float(meta.detach()), float(imit.detach()), new_student, new_teachers, diverged
        )


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
    """Meta-trains ``learned`` on ``problem``; one call of :meth:`period` is one curriculum period."""

    def __init__(
        self,
        learned: nn.Module,
        teachers: list[Teacher],
        loss: AmalgamationLoss,
        cfg: MetaConfig,
        problem: Problem,
        seed: int = 0,
    ) -> None:
        self.learned, self.cfg = learned, cfg
        self.unroller = Unroller(learned, teachers, loss, cfg, problem)
        self.meta_opt = torch.optim.Adam(learned.parameters(), lr=cfg.meta_lr, eps=1e-7)
        self.gen = torch.Generator().manual_seed(seed)
        self.instance_counter = 0
        self.seed = seed

    def _params(self) -> dict[str, Tensor]:
        return dict(self.learned.named_parameters())

    def period(self, stage: int, on_step: Callable[[int, float], None] | None = None) -> PeriodResult:
        cfg = self.cfg
        depth = cfg.depths[min(stage, len(cfg.depths) - 1)]
        alpha = alpha_schedule(stage, cfg.alphas)
        losses, steps, diverged = [], 0, 0
        for _ in range(cfg.instances):
            self.instance_counter += 1
            seed = hash((self.seed, self.instance_counter)) % (2**31)
            model, s, student, teachers = self.unroller.start(seed, self.gen)
            for _ in range(depth):
                batches = self.unroller.batches(self.gen)
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
        if cfg.perturbation == "adversarial":
            psi = {k: torch.zeros_like(p, requires_grad=True) for k, p in params.items()}
            attacked = {k: p.detach() + psi[k] for k, p in params.items()}
            probe = self.unroller.truncation(
                model, s, student, teachers, batches, alpha, attacked, train=True
            )
            grads = torch.autograd.grad(probe.loss, list(psi.values()), allow_unused=True)
            shifted = {}
            for (k, p), gr in zip(params.items(), grads):
                step = torch.zeros_like(p) if gr is None else gr
                limit = cfg.epsilon * float(p.detach().norm())
                norm = float(step.norm())
                if norm > limit:  # clip_by_norm(grad, eps * ||phi||): zero-norm tensors do not move
                    step = step * (limit / norm) if limit > 0 else torch.zeros_like(step)
                shifted[k] = p + step.detach()
            params = shifted
            teachers = [Trajectory(t.theta.clone(), t.state) for t in teachers]
        res = self.unroller.truncation(
            model, s, student, teachers, batches, alpha, params, train=True, noise=noise
        )
        self.meta_opt.zero_grad()
        if res.loss.requires_grad and torch.isfinite(res.loss):
            res.loss.backward()
            adaptive_clip_(self.learned, cfg.clip)
            self.meta_opt.step()
        return res

    def validate(self, stage: int) -> float:
        """Mean meta loss over fixed-seed instances with the next stage's horizon, α = 0."""
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
                    model, s, student, [], self.unroller.batches(gen), 0.0, params, train=False, noise=noise
                )
                student = res.student
                total += res.meta if math.isfinite(res.meta) else 10.0
                count += 1
                if res.diverged:
                    break
        return total / max(1, count)

    # -- checkpoints ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "learned": {k: v.detach().clone() for k, v in self.learned.state_dict().items()},
            "meta_opt": self.meta_opt.state_dict(),
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
            "instance_counter": self.instance_counter,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        self.learned.load_state_dict(sd["learned"])
        self.meta_opt.load_state_dict(sd["meta_opt"])
        self.gen.set_state(sd["gen"])
        torch.set_rng_state(sd["torch_rng"])
        self.instance_counter = sd["instance_counter"]
