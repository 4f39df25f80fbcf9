"""``nosplug report``: files and figures, the data behind them, the effective LR multiplier, bad input.

Two tiny studies are run once per module: ``tiny`` (random initial population, 2 particles,
2 timesteps) for the fitness figure and the comparison, and ``dec`` (the zoo's ``lr1`` and
``adam`` as initial genomes) so that a best genome surely has decay functions.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pytest
import torch
from study_helpers import write_config

from nosplug import zoo
from nosplug.cli import main
from nosplug.genome.model import Genome
from nosplug.optim.effective_lr import effective_lr_multiplier
from nosplug.reporting import build_report
from nosplug.reporting.data import initial_population, live_evaluations, particle_trajectories
from nosplug.search import ranking
from nosplug.search.api import create_search
from nosplug.study import trials
from nosplug.study.export import trial_rows
from nosplug.study.kinds import open_study, plan_state
from nosplug.study.studies import load as load_study
from nosplug.study.worker import Worker

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def studies(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("report-studies")
    url = f"journal:{d / 'j.log'}"
    tiny = write_config(d / "tiny.toml", name="tiny", init=4, particles=2, timesteps=2, mutations=2)
    dec = write_config(  # no gates: both initial genomes get a fitness, whatever their seed
        d / "dec.toml",
        name="dec",
        timesteps=1,
        mutations=1,
        extra_ga='initial_genomes = ["lr1", "adam"]',
        extra_eval="prescreen_gate = 0.0\nsweep_gate = 0.0\nfinal_floor = 0.0",
    )
    for cfg, name in ((tiny, "tiny"), (dec, "dec")):
        create_search(cfg, storage=url)
        assert Worker(name, url, threads=1).run().done
    return {"url": url, "journal": str(d / "j.log")}


def _png_ok(path: Path) -> None:
    import matplotlib.image

    raw = path.read_bytes()
    assert raw.startswith(PNG_SIGNATURE) and len(raw) > 10_000, path
    pixels = matplotlib.image.imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] > 300 and pixels.shape[1] > 500
    assert float(pixels.std()) > 0.01, f"{path.name} is blank"


# ----------------------------------------------------------------------------- the command
def _study_data(url: str) -> tuple:
    """Everything of study tiny but its artifacts: what a report must leave as it found it."""
    s = load_study("tiny", url)
    trials = [(t.number, t.state, t.values, t.user_attrs, t.intermediate_values) for t in s.get_trials()]
    return s.user_attrs, trials


def test_report_command_writes_md_html_and_pngs(studies, tmp_path: Path, capsys) -> None:
    from nosplug.study import artifacts

    before = _study_data(studies["url"])
    out = tmp_path / "rep"
    code = main(["report", "tiny", "--storage", studies["url"], "--out", str(out), "--baselines", "sgd"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert _study_data(studies["url"]) == before, "the report changed the study's data"
    assert "report.html" in captured.out and "sgd" in captured.out
    # its only write: the files, attached to the study for optuna-dashboard (docs/studies.md)
    attached = {m.filename for m in artifacts.listed(load_study("tiny", studies["url"]))}
    assert attached == {p.name for p in out.iterdir() if p.suffix in (".md", ".html", ".png")}

    pngs = sorted(out.glob("*.png"))
    assert {"fitness.png", "comparison.png"} <= {p.name for p in pngs}
    for p in pngs:
        _png_ok(p)
    md = (out / "report.md").read_text()
    for p in pngs:
        assert f"]({p.name})" in md
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert "<img" in page and 'src="' + "fitness.png" not in page  # self-contained: nothing linked
    study = load_study("tiny", studies["url"])
    top = ranking.best(study, 5, stage="evolution")
    assert top
    for t in top:  # the genome as evaluated: with the integrity check's sign flip
        formula = trials.evaluated_genome(t.user_attrs).formula()
        assert html.escape(formula) in page
        assert formula.replace("|", "\\|") in md
    cache = json.loads((out / "baselines.json").read_text())
    (entry,) = cache["entries"].values()
    assert entry["genome"] == "sgd" and entry["hash"] == zoo.load("sgd").canonical_hash()


def test_baselines_are_cached_and_studys_own_results_reused(studies, tmp_path: Path) -> None:
    out = tmp_path / "rep"
    first = build_report("tiny", studies["url"], out=out, top=2, baselines=["sgd"], formats=["md"])
    rows = {r.label: r.result for r in first.comparison}
    assert rows["sgd"].source == "evaluated"
    assert [r.search for r in first.comparison] == [True, True, False]
    assert all(r.result.source == "study" for r in first.comparison if r.search)
    assert (out / "report.md").exists() and not (out / "report.html").exists()
    again = build_report("tiny", studies["url"], out=out, top=2, baselines=["sgd"], formats=["md"])
    again_sgd = next(r.result for r in again.comparison if r.label == "sgd")
    assert again_sgd.source == "cache"
    assert (again_sgd.status, again_sgd.fitness, again_sgd.chosen_lr) == (
        rows["sgd"].status,
        rows["sgd"].fitness,
        rows["sgd"].chosen_lr,
    )
    # adam is one of study dec's initial genomes: its stored evaluation is the baseline, nothing trains
    dec = build_report("dec", studies["url"], out=tmp_path / "dec", baselines=["adam"], formats=["html"])
    adam = next(r.result for r in dec.comparison if r.label == "adam")
    stored = next(t for t in load_study("dec", studies["url"]).trials if t.user_attrs["key"] == "p001/start")
    assert adam.source == "study" and adam.fitness == stored.user_attrs["fitness"]
    assert not (tmp_path / "dec" / "baselines.json").exists()


def test_schedule_figure_for_genomes_with_decays(studies, tmp_path: Path) -> None:
    rep = build_report("dec", studies["url"], out=tmp_path / "dec", baselines=[], top=5)
    lr1 = next(b for b in rep.best if b.key == "p000/start")
    assert lr1.has_decays and lr1.hash == zoo.load("lr1").canonical_hash()
    assert not next(b for b in rep.best if b.key == "p001/start").has_decays  # adam
    _png_ok(rep.figures["schedules"])
    assert rep.comparison and all(r.search for r in rep.comparison)
    curve = next(c for c in rep.schedules if "p000/start" in c.title)
    preset = open_study(load_study("dec", studies["url"])).presets["evolution"]
    assert curve.total_steps == preset.schedule_steps and curve.final_steps == preset.final_steps
    T = preset.schedule_steps
    expected = _spec_multiplier("lr1", torch.tensor(curve.steps, dtype=torch.float64), T)
    for s, base, learned, m in zip(curve.steps, curve.base, curve.learned, expected.tolist()):
        if base > 0:
            assert learned / base == pytest.approx(m, abs=1e-4), s
    assert curve.base[0] == 0.0 and max(curve.base) == pytest.approx(1.0)
    # drawn only over the final run: no step past the run's end (where a schedule "jumps back")
    assert curve.steps[0] == 0 and curve.steps[-1] == min(T, preset.final_steps) - 1
    page = (tmp_path / "dec" / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # fitness, schedules, comparison


# ----------------------------------------------------------------------------- data behind figure 1
def test_particle_trajectories_follow_the_chosen_positions(studies) -> None:
    study = load_study("tiny", studies["url"])
    rows = trial_rows(study)
    plan = plan_state(study)
    current = {p: info["key"] for p, info in plan.progress["positions"].items()}
    trajs = particle_trajectories(rows, current)
    assert [t.particle for t in trajs] == [0, 1]
    live = live_evaluations(rows)
    for traj in trajs:
        p = traj.particle
        assert traj.positions[0].key == f"p{p:03d}/start"
        assert len(traj.positions) == 3 and traj.positions[-1].key == current[p]
        assert {c.key for c in traj.children} == {
            k for k, e in live.items() if e.particle == p and e.slot is not None
        }
        for k in (1, 2):
            pos = traj.positions[k]
            assert pos.timestep == k and pos.parent == traj.positions[k - 1].key
            # the GA's rule (spec §9.1): the best child; if every child was rejected, the first one
            kids = [c for c in traj.children if c.timestep == k]
            scored = [c for c in kids if c.scored]
            if scored:
                assert pos.fitness == max(c.fitness for c in scored)
        row = {r["key"]: r for r in rows}
        assert traj.fitness == [
            row[e.key]["fitness"] if e.state == "COMPLETE" else None for e in traj.positions
        ]
    # without the planner's current positions the trajectories stop at the last parent
    assert [len(t.positions) for t in particle_trajectories(rows)] == [2, 2]
    init = initial_population(rows)
    # 4 initial genomes, then more drawn until both particles had a passing one (spec §9.1 + dev. 32)
    assert len(init) >= 4 and [e.key for e in init] == [f"init/{i:04d}" for i in range(len(init))]
    assert sum(e.rejected for e in init) + sum(e.scored for e in init) == len(init)
    assert sum(e.scored for e in init) >= 2 or len(init) == 16


def test_trajectories_skip_abandoned_trials_and_unfinished_children() -> None:
    def row(n: int, key: str, state: str, fitness: float | None, **kw) -> dict:
        return {"trial_number": n, "key": key, "state": state, "fitness": fitness, "stage": "evolution", **kw}

    rows = [
        row(0, "p000/start", "FAIL", None, particle=0, timestep=0, abandoned=True),
        row(
            1, "p000/k1/r0/m0", "COMPLETE", 0.5, particle=0, timestep=1, slot=0, round=0, parent="p000/start"
        ),
        row(2, "p000/start", "COMPLETE", 0.4, particle=0, timestep=0),
        row(
            3, "p000/k1/r0/m1", "RUNNING", None, particle=0, timestep=1, slot=1, round=0, parent="p000/start"
        ),
    ]
    (traj,) = particle_trajectories(rows)
    assert [e.trial for e in traj.positions] == [2]  # the re-issued start, not the abandoned one
    assert traj.fitness == [0.4]
    running = next(c for c in traj.children if c.key.endswith("m1"))
    assert not running.finished and not running.rejected


# ----------------------------------------------------------------------------- effective LR multiplier
def _spec_multiplier(name: str, t: torch.Tensor, T: int) -> torch.Tensor:
    """The closed forms of spec §11.3 for the zoo's LR genomes."""
    u, r = t / T, torch.remainder(2 * t, T) / T
    a4 = 0.5 * (1 - torch.cos(math.pi * u))
    a8 = 0.5 * (1 - torch.cos(math.pi * r))
    a10, a11 = r, torch.pow(0.01, u)

    def dtanh(x: torch.Tensor) -> torch.Tensor:
        return 1 - torch.tanh(x) ** 2

    return {
        "lr1": torch.erfc(torch.erfc(a4)) / dtanh(a8),
        "lr5": 1 / torch.sqrt(torch.erf(a11)),
        "lr7": torch.sqrt(1 + a10),
    }[name]


@pytest.mark.parametrize("name", ["lr1", "lr5", "lr7"])
@pytest.mark.parametrize("T", [60, 250])
def test_effective_lr_multiplier_matches_the_spec(name: str, T: int) -> None:
    steps, m = effective_lr_multiplier(zoo.load(name), T)
    assert steps.tolist() == list(range(T))
    expected = _spec_multiplier(name, steps.to(torch.float64), T)
    assert torch.allclose(m, expected, rtol=0, atol=1e-4), (m - expected).abs().max()


def test_effective_lr_multiplier_without_decays_and_on_a_plain_edge() -> None:
    steps, m = effective_lr_multiplier(zoo.load("adam"), 100, points=7)
    assert len(steps) == 7 and steps[0] == 0 and steps[-1] == 99 and bool((steps.diff() > 0).all())
    assert torch.equal(m, torch.ones(7, dtype=torch.float64))
    # SGD whose gradient edge carries the cosine decay a3: m(t) is a3(t) exactly
    g = zoo.load("sgd").to_dict()
    decay = {
        "hidden": {"arity": 1, "unary": "identity", "binary": "add", "inputs": ["a1"]},
        "out": {"arity": 1, "unary": "identity", "binary": "add", "inputs": ["a3"]},
    }
    g["nodes"][0]["inputs"] = [{"src": "g", "decay": decay}]
    steps, m = effective_lr_multiplier(Genome.from_dict(g), 40, points=[0, 10, 39])
    expected = 0.5 * (1 + torch.cos(math.pi * steps.to(torch.float64) / 40))
    assert torch.allclose(m, expected, atol=1e-12)
    with pytest.raises(ValueError):
        effective_lr_multiplier(zoo.load("lr1"), 40, points=[40])


# ----------------------------------------------------------------------------- bad input
def test_cli_default_baselines_match_the_library() -> None:
    from nosplug.cli import report_cmd
    from nosplug.reporting import DEFAULT_BASELINES

    assert tuple(report_cmd.DEFAULT_BASELINES.split(",")) == DEFAULT_BASELINES


def _fails(args: list[str], capsys, message: str, one_line: bool = True) -> None:
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err
    if one_line:  # click's usage errors (conflicting options) add the usage line, as everywhere
        assert len(err.strip().splitlines()) == 1, err


def test_bad_input_is_one_line_and_writes_nothing(studies, tmp_path: Path, capsys) -> None:
    from nosplug.amalgamation.run import create_run

    url = f"journal:{tmp_path / 'other.log'}"
    out = tmp_path / "never"
    create_search(write_config(tmp_path / "empty.toml", name="empty"), storage=url)
    create_run(
        Path(__file__).parents[1] / "studies" / "amalgamation-quick.toml",
        name="amal",
        storage=url,
        checkpoint_dir=str(tmp_path / "ck"),
    )
    base = ["--out", str(out), "--no-baselines"]
    _fails(["report", "nope", "--storage", url, *base], capsys, "no study named 'nope'")
    _fails(["report", "empty", "--storage", url, *base], capsys, "no finished evaluation")
    _fails(["report", "amal", "--storage", url, *base], capsys, "is an amalgamation run")
    _fails(
        ["report", "tiny", "--storage", studies["url"], "--out", str(out), "--baselines", "sgd,nonsense"],
        capsys,
        "'nonsense' is neither a zoo genome",
    )
    _fails(
        ["report", "tiny", "--storage", studies["url"], *base, "--baselines", "sgd"], capsys, "exclude", False
    )
    _fails(
        ["report", "tiny", "--storage", studies["url"], "--format", "pdf"],
        capsys,
        "'pdf' is not one of",
        False,
    )
    _fails(
        ["report", "tiny", "--storage", f"journal:{tmp_path / 'missing.log'}", *base],
        capsys,
        "does not exist",
    )
    assert not out.exists()
    from nosplug.search.rounds import create_elimination

    create_elimination("tiny", studies["url"], elimination_name="tiny.el")
    _fails(["report", "tiny.el", "--storage", studies["url"], *base], capsys, "elimination study")
    assert not out.exists()
