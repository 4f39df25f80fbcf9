"""Search planners as plugins: random search and regularized evolution beside the particle GA,
warm starts (ga.seed_genomes), the [search] section, and a planner a plugin registers."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_helpers import drive, fake_result, write_config

import nosplug
from nosplug.genome.space import SearchSpace
from nosplug.search.config import ConfigError, SearchConfig
from nosplug.search.planners.base import SEEDED, PlannerInputs, PlannerOptionsError
from nosplug.search.planners.evolution import RegularizedEvolution
from nosplug.search.planners.particle_ga import GAConfig, ParticleGA
from nosplug.search.planners.random_search import RandomSearch
from nosplug.study.plan import COMPLETE, Planned, Record


def _inputs(options, seeds=(), seed=5) -> PlannerInputs:
    return PlannerInputs(seed, SearchSpace.paper(), "maximize", tuple(seeds), GAConfig(seed=seed), options)


def _adam():
    return ("adam", nosplug.zoo.load("adam"))


def test_random_search_plans_its_budget_at_once_with_warm_starts_first() -> None:
    planner = RandomSearch(_inputs({"evaluations": 12}, [_adam()]))
    first = planner.plan({})
    assert len(first.new) == 12 and not first.done and planner.expected_evaluations == 12
    assert (
        first.new[0].attrs[SEEDED] == "adam"
        and first.new[0].genome.canonical_hash() == _adam()[1].canonical_hash()
    )
    assert all(SEEDED not in p.attrs for p in first.new[1:])
    assert len({p.genome.canonical_hash() for p in first.new}) > 6  # random genomes of the space
    assert {p.stage for p in first.new} == {"evolution"}
    records = drive(RandomSearch(_inputs({"evaluations": 12}, [_adam()])))
    assert sorted(records) == sorted(p.key for p in first.new)


def test_a_plan_is_the_same_whatever_order_the_results_arrive_in() -> None:
    for make in (
        lambda: RandomSearch(_inputs({"evaluations": 10})),
        lambda: RegularizedEvolution(
            _inputs({"evaluations": 18, "population": 6, "sample": 3, "parallel": 2})
        ),
    ):
        a = {k: (r.genome.to_json(), r.fitness) for k, r in drive(make()).items()}
        b = {k: (r.genome.to_json(), r.fitness) for k, r in drive(make(), order_seed=7).items()}
        c = {k: (r.genome.to_json(), r.fitness) for k, r in drive(make(), order_seed=1).items()}
        assert a == b == c and len(a) >= 10


def _evolve(planner, result) -> tuple[dict[str, Planned], dict[str, Record]]:
    """Run ``planner`` to the end in plan order, each evaluation's record made by ``result``."""
    planned: dict[str, Planned] = {}
    records: dict[str, Record] = {}
    while True:
        res = planner.plan(records)
        for p in res.new:
            planned[p.key] = p
            records[p.key] = result(p)
        if res.done:
            return planned, records


def test_regularized_evolution_takes_the_best_of_its_sample_and_ages_the_oldest_out() -> None:
    """Real et al.'s cycle, checked child by child: the parent is the best of ``sample`` members
    drawn from the newest ``population`` evaluations (so the oldest have aged out)."""
    from nosplug.study.plan import key_rng

    opts = {"evaluations": 20, "population": 5, "sample": 3, "parallel": 1}
    planned, records = _evolve(RegularizedEvolution(_inputs(opts, [_adam()])), fake_result)
    keys = sorted(records)
    # the warm start takes the youngest place of the initial population, so it ages out last
    assert len(keys) == 20 and planned[keys[4]].attrs[SEEDED] == "adam"
    assert all(SEEDED not in planned[k].attrs for k in keys[:4])

    def score(k):
        r = records[k]
        return r.fitness if r.accepted else float("-inf")

    for i in range(5, 20):
        pool = keys[i - 5 : i]  # parallel 1: the five evaluations just before child i
        sample = key_rng(5, f"{keys[i]}/sample").sample(pool, 3)
        best = max(sample, key=lambda k: (score(k), -keys.index(k)))
        assert planned[keys[i]].attrs["parent"] == best, keys[i]
        assert (keys[4] in pool) == (i < 10)  # in the population for `population` children
    assert all(planned[k].attrs.get("parent") != keys[4] for k in keys[10:])  # then aged out


def test_a_warm_start_parents_regularized_evolution_while_it_is_the_best() -> None:
    """Adam as the best member (every other genome scores below it) is the parent of every child
    whose tournament draws it, for as long as it is in the population (before the fix it was the
    oldest member and aged out at the first child)."""
    from nosplug.study.plan import key_rng

    opts = {"evaluations": 16, "population": 6, "sample": 3, "parallel": 2}
    planned, _ = _evolve(
        RegularizedEvolution(_inputs(opts, [_adam()])),
        lambda p: Record(p.key, p.genome, True, COMPLETE, 1.0 if SEEDED in p.attrs else 0.1),
    )
    keys = sorted(planned)
    drawn = 0
    for i in range(6, 16):
        pool = keys[max(0, i - 1 - 6) : i - 1]  # parallel 2: evaluations up to i - 2
        sample = key_rng(5, f"{keys[i]}/sample").sample(pool, 3)
        assert (planned[keys[i]].attrs["parent"] == "re/0005") == ("re/0005" in sample)
        drawn += "re/0005" in sample
    assert drawn >= 1


def test_more_warm_starts_than_the_population_is_an_error() -> None:
    with pytest.raises(PlannerOptionsError, match="warm starts do not fit a population of 2"):
        RegularizedEvolution(
            _inputs({"evaluations": 6, "population": 2, "sample": 1, "parallel": 1}, [_adam()] * 3)
        )


def test_regularized_evolution_waits_for_the_results_it_reads() -> None:
    planner = RegularizedEvolution(_inputs({"evaluations": 12, "population": 4, "sample": 2, "parallel": 2}))
    first = planner.plan({})
    assert [p.key for p in first.new] == ["re/0000", "re/0001", "re/0002", "re/0003"]
    records = {p.key: fake_result(p) for p in first.new[:3]}
    records["re/0003"] = Record("re/0003", first.new[3].genome, False)  # still running
    nxt = planner.plan(records)
    # child 4 reads evaluations 0..2 (parallel 2): planned; child 5 needs evaluation 3: not yet
    assert [p.key for p in nxt.new] == ["re/0004"]
    parent = nxt.new[0].attrs["parent"]
    assert parent in ("re/0000", "re/0001", "re/0002")
    assert nxt.new[0].genome.canonical_hash() not in {r.genome.canonical_hash() for r in records.values()}


def test_the_particle_ga_puts_warm_starts_first_in_its_initial_population() -> None:
    cfg = GAConfig(
        particles=2, timesteps=1, mutations=2, initial_population=6, seed=3, seed_genomes=(_adam(),)
    )
    first = ParticleGA(cfg, SearchSpace.paper()).plan({})
    assert first.new[0].key == "init/0000" and first.new[0].attrs[SEEDED] == "adam"
    assert len(first.new) == 6 and all(SEEDED not in p.attrs for p in first.new[1:])


def _raw(tmp_path: Path, extra_ga: str = "", search: str = "") -> dict:
    from nosplug.tomlconfig import read_toml

    path = write_config(tmp_path / "c.toml", extra_ga=extra_ga)
    text = path.read_text() + search
    path.write_text(text)
    return read_toml(path, ConfigError)


def test_the_search_section_selects_a_planner_with_its_options(tmp_path: Path) -> None:
    raw = _raw(tmp_path, 'seed_genomes = ["adam", "opt6"]', '[search]\nplanner = "regularized-evolution"\n'
               '[search.options]\nevaluations = 9\npopulation = 3\nsample = 2\n')  # fmt: skip
    cfg = SearchConfig(raw)
    planner = cfg.make_planner()
    assert isinstance(planner, RegularizedEvolution) and planner.n == 9 and planner.lag == 2
    assert [r for r, _ in cfg.seeds] == ["adam", "opt6"]
    assert cfg.raw["ga"]["seed_genomes"][0]["ref"] == "adam"  # stored with its genome
    assert isinstance(SearchConfig(_raw(tmp_path)).make_planner(), ParticleGA)  # the default


@pytest.mark.parametrize(
    ("search", "extra_ga", "message"),
    [
        ('[search]\nplanner = "annealing"\n', "", r"search\.planner: unknown planner 'annealing'"),
        ('[search]\nplanner = "random"\n[search.options]\ncycles = 3\n', "",
         r"search\.options\.cycles: not an option of planner 'random' \(known: evaluations\)"),
        ('[search]\nplanner = "random"\n[search.options]\nevaluations = "many"\n', "",
         r"search\.options\.evaluations: expected int"),
        ('[search]\nplanner = "random"\n[search.options]\nevaluations = 0\n', "", "at least 1"),
        ('[search]\nplanner = "regularized-evolution"\n[search.options]\nsample = 50\n', "",
         "sample <= population"),
        ("", 'seed_genomes = ["no-such-genome"]', r"ga\.seed_genomes\[0\]"),
        ("", 'seed_genomes = ["adam"]\ninitial_genomes = ["adam"]', "give one or the other"),
    ],
)  # fmt: skip
def test_bad_search_settings_are_one_line_naming_the_key(tmp_path, search, extra_ga, message) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        SearchConfig(_raw(tmp_path, extra_ga, search)).make_planner()
    assert "\n" not in str(info.value)


def test_study_create_refuses_planner_options_that_cannot_work_and_stores_nothing(tmp_path: Path) -> None:
    """The planner is built at ``study create``: its options' error is one line and exit 2 before
    anything is stored, not a study that fails at its first ``study run``."""
    from study_helpers import nosplug as nosplug_cli

    cfg = write_config(tmp_path / "c.toml", extra_ga='seed_genomes = ["adam", "adam", "adam"]')
    cfg.write_text(cfg.read_text() + '[search]\nplanner = "regularized-evolution"\n'
                   "[search.options]\nevaluations = 6\npopulation = 2\nsample = 1\n")  # fmt: skip
    journal = tmp_path / "journal.log"
    out = nosplug_cli("study", "create", str(cfg), "--storage", str(journal))
    assert out.returncode == 2, out.stdout + out.stderr
    assert "3 warm starts do not fit a population of 2" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert not journal.exists() or "tiny" not in journal.read_text()


def test_a_plugin_planner_is_selected_by_name(tmp_path: Path) -> None:
    from nosplug import plugins
    from nosplug.hookspecs import hookimpl
    from nosplug.search.planners.base import PlannerSpec
    from nosplug.study.plan import PlanResult

    class Fixed:
        name = "fixed"
        expected_evaluations = 1

        def __init__(self, inputs):
            self.inputs = inputs

        def plan(self, records):
            done = "f/0" in records and records["f/0"].finished
            return PlanResult(
                [] if "f/0" in records else [Planned("f/0", nosplug.zoo.load("sgd"), "evolution", 1)], done
            )

    class Plugin:
        @staticmethod
        @hookimpl
        def nosplug_planners():
            return [PlannerSpec("fixed", Fixed, {}, "always sgd")]

    plugins.reset()
    plugins.plugin_manager().register(Plugin, name="fixed-planner")
    planner = SearchConfig(_raw(tmp_path, search='[search]\nplanner = "fixed"\n')).make_planner()
    assert isinstance(planner, Fixed) and planner.plan({}).new[0].key == "f/0"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("planner", "options"),
    [("random", "evaluations = 4"), ("regularized-evolution", "evaluations = 5\npopulation = 3\nsample = 2")],
)
def test_a_planner_runs_and_resumes_on_the_work_queue(tmp_path: Path, planner: str, options: str) -> None:
    """Same storage, resume, workers and export for every planner: a run interrupted after two
    evaluations and resumed ends with exactly the trials of an uninterrupted one."""
    import pyarrow.parquet as pq
    from study_helpers import nosplug as nosplug_cli
    from study_helpers import signature

    from nosplug.study.studies import load

    search = f'[search]\nplanner = "{planner}"\n[search.options]\n{options}\n'
    sigs = []
    for name, steps in (("whole", [None]), ("resumed", [2, None])):
        cfg = write_config(tmp_path / f"{name}.toml", name="x", extra_ga='seed_genomes = ["adam"]')
        cfg.write_text(cfg.read_text() + search)
        url = f"journal:{tmp_path / name / 'j.log'}"
        assert nosplug_cli("study", "create", str(cfg), "--storage", url).returncode == 0
        for max_trials in steps:
            extra = ["--max-trials", str(max_trials)] if max_trials else []
            out = nosplug_cli("study", "run", "x", "--storage", url, "--quiet", *extra)
            assert out.returncode == 0, out.stderr
        study = load("x", url)
        sigs.append(signature(study))
        seeded = [t for t in study.trials if t.user_attrs.get("seeded")]
        assert [t.user_attrs["seeded"] for t in seeded] == ["adam"]
    assert sigs[0] == sigs[1]
    target = tmp_path / "x.parquet"
    assert nosplug_cli("study", "export", "x", "--storage", url, "--out", str(target)).returncode == 0
    table = pq.read_table(target).to_pydict()
    assert set(table["planner"]) == {planner} and table["seeded"].count("adam") == 1
    best = nosplug_cli("study", "best", "x", "--storage", url)
    assert best.returncode == 0 and "fitness" in best.stdout


SHIPPED = sorted(
    p for p in (Path(__file__).parents[1] / "studies").glob("*.toml") if not p.name.startswith("amalgamation")
)


@pytest.mark.parametrize("config", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_search_config_creates_its_study(config: Path, tmp_path: Path) -> None:
    """The configs the docs tell users to run (the main job, the discovery and its negative
    attempts, the paper's pipeline) are valid: each creates its study under its own name."""
    from nosplug.search.api import create_search

    study = create_search(str(config), storage=str(tmp_path / "journal.log"))
    assert study.study_name == config.stem
