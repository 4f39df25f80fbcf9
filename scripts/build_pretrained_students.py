"""Rebuild the pretrained students shipped in nosplug/amalgamation/pretrained/ (package data).

Mean, min-max and choice amalgamation of the **large** pool (Adam, RMSProp, SGD, Momentum,
AddSign, PowerSign with the paper's learning rates) into RNNProp, each meta-trained with a
budget scaled down to minutes on one CPU thread (the quick config's curriculum on the MNIST-5k
MLP: truncations of 20 steps, 3 stages up to 4 truncations, random weight perturbation; the
paper: 100-step truncations, 4 stages up to 10, hours on a GPU), then evaluated against its
teachers on the training problem and two held-out ones. Every file records how it was made
(config, seed, nosplug/torch versions, meta-steps, periods, seconds, this command) and the
evaluation figures.

    OMP_NUM_THREADS=1 python scripts/build_pretrained_students.py            # about 10 minutes
    python scripts/build_pretrained_students.py --only choice-large --work /tmp/pre

Training goes through the ordinary ``nosplug.amalgamation.run`` code path in a journal storage
under ``--work`` (resumable: rerun the same command after an interruption).
"""

from __future__ import annotations

import argparse
import copy
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

import nosplug
from nosplug.amalgamation import config as amconfig
from nosplug.amalgamation import run as amrun
from nosplug.amalgamation import zoo
from nosplug.amalgamation.evaluate import (
    evaluate,
    learned_stepper,
    steps_per_epoch,
    summarise,
    teacher_stepper,
)
from nosplug.amalgamation.problems import get_problem
from nosplug.amalgamation.student import load
from nosplug.amalgamation.teachers import resolve_teacher

ROOT = Path(__file__).resolve().parents[1]
SEED = 0
LARGE = ["adam", "rmsprop", "sgd", "momentum", "addsign", "powersign"]
META = {
    "unroll": 20,
    "warmup_steps": 20,
    "depths": [1, 2, 4],
    "val_depths": [2, 4, 8],
    "alphas": [0.2, 0.1, 0.05],
    "instances": 6,
    "val_instances": 2,
    "min_periods": 2,
    "patience": 1,
    "max_periods": 3,
    "random_scaling": False,
    "perturbation": "random",
    "sigma": 5e-4,
}
EVALUATION = {"problems": ["mlp", "mlp_deeper", "digits_mlp"], "runs": 2, "epochs": 6}
STUDENTS = {"mean-large": "mean", "minmax-large": "minmax", "choice-large": "choice"}


def config(name: str) -> dict[str, Any]:
    loss = STUDENTS[name]
    raw = {
        "run": {"name": f"pretrained-{name}", "seed": SEED, "problem": "mlp",
                "description": f"nosplug pretrained student {name}"},
        "student": {"kind": "rnnprop"},
        "teachers": {"pool": "large"},
        "loss": {"name": loss},
        "meta": copy.deepcopy(META),
        "evaluation": {**EVALUATION, "teachers": LARGE},
    }  # fmt: skip
    if loss == "choice":
        raw["choice"] = {"pool": "large"}
    return amconfig.normalise(raw)


def build(name: str, work: Path, out: Path) -> Path:
    storage = f"journal:{work / 'journal.log'}"
    raw = config(name)
    run_name = raw["run"]["name"]
    from nosplug.study.storage import open_storage, storage_url
    from nosplug.study.studies import study_names

    if run_name not in study_names(open_storage(storage_url(storage))):
        amrun.create_run_from(raw, storage=storage, checkpoint_dir=str(work / run_name))
    t0 = time.perf_counter()

    def show(e: dict[str, Any]) -> None:
        if e["event"] in ("period", "repeat", "phase_done", "resumed"):
            from nosplug.cli.amalgamate_cmd import describe_event

            print(f"  [{time.perf_counter() - t0:6.0f} s] {name}: {describe_event(e)}", flush=True)

    summary = amrun.run(run_name, storage, on_event=show)
    seconds = time.perf_counter() - t0
    study = amrun.load_run(run_name, storage)
    kept = [t for t in study.trials if t.state.name == "COMPLETE" and not t.user_attrs.get("repeated")]
    every = [t for t in study.trials if t.state.name == "COMPLETE"]
    learned = load(summary["student"])
    print(f"  {name}: meta-trained in {seconds:.0f} s; evaluating", flush=True)
    results = []
    for problem in EVALUATION["problems"]:
        horizon = EVALUATION["epochs"] * steps_per_epoch(get_problem(problem))
        opts = {"student": learned_stepper(learned, META["warmup_steps"])}
        opts.update({t: teacher_stepper(resolve_teacher(t, total_steps=horizon)) for t in LARGE})
        results += evaluate(opts, [problem], EVALUATION["runs"], EVALUATION["epochs"])
    rows = summarise(results, "student", LARGE)
    figures = {r["problem"]: {} for r in rows}
    for r in rows:
        figures[r["problem"]][r["optimizer"]] = round(r["best_log_val_mean"], 4)
    for problem, f in figures.items():
        teachers = {k: v for k, v in f.items() if k != "student"}
        best, worst = min(teachers.values()), max(teachers.values())
        print(
            f"  {name} on {problem}: student {f['student']:+.3f}, teachers {best:+.3f} to {worst:+.3f}",
            flush=True,
        )
    training = {
        "config": raw,
        "seed": SEED,
        "nosplug_version": nosplug.__version__,
        "torch_version": torch.__version__,
        "python": platform.python_version(),
        "meta_steps": sum(int(t.user_attrs["meta_steps"]) for t in kept),
        "meta_steps_including_redone_periods": sum(int(t.user_attrs["meta_steps"]) for t in every),
        "periods": len(kept),
        "seconds": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "command": "OMP_NUM_THREADS=1 python scripts/build_pretrained_students.py --only " + name,
    }
    evaluation = {
        "what": "best log validation loss, mean over runs (lower is better); "
        "held out: mlp_deeper, digits_mlp",
        **EVALUATION,
        "best_log_val": figures,
    }
    return zoo.write(out / f"{name}.json", learned, name, training, evaluation=evaluation)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated names (default: all)")
    ap.add_argument("--work", type=Path, help="storage and checkpoints (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=zoo.DIR)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    names = args.only.split(",") if args.only else list(STUDENTS)
    unknown = [n for n in names if n not in STUDENTS]
    if unknown:
        sys.exit(f"unknown student(s) {', '.join(unknown)}; known: {', '.join(STUDENTS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="nosplug-pretrained-"))
    work.mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"working folder {work}; writing to {args.out}", flush=True)
    for name in names:
        print(f"building {name}", flush=True)
        path = build(name, work, args.out)
        print(f"wrote {path} ({path.stat().st_size // 1024} KiB)", flush=True)


if __name__ == "__main__":
    main()
