"""The house rules of docs/architecture.md, read off the code: layers, no import circles, and a
third party's study kind running on the generic work queue."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nosplug"

#: Module prefix -> layer (docs/architecture.md, bottom up). A module may import its own layer and
#: the layers below; within one layer, only the pairs of SIBLINGS.
LAYERS: list[tuple[str, ...]] = [
    (
        "nosplug.errors",
        "nosplug.tomlconfig",
        "nosplug.hookspecs",
        "nosplug.version",
        "nosplug.config",
        "nosplug.quiet",
        "nosplug.callable_package",
    ),
    ("nosplug.plugins", "nosplug.refs"),
    ("nosplug.primitives",),
    ("nosplug.genome",),
    ("nosplug.optim", "nosplug.zoo", "nosplug.export", "nosplug.baselines"),
    ("nosplug.tasks",),
    ("nosplug.evaluation", "nosplug.stats"),
    ("nosplug.study",),
    ("nosplug.benchmark", "nosplug.amalgamation", "nosplug.search"),
    ("nosplug.reporting",),
    ("nosplug.builtin",),
    ("nosplug.cli", "nosplug.__main__", "nosplug"),
]
#: Allowed imports between siblings of one layer: (importer prefix, imported prefix).
SIBLINGS = {
    ("nosplug.search", "nosplug.benchmark"),  # a search is followed by its verdict, a benchmark
    ("nosplug.benchmark", "nosplug.amalgamation"),  # student: and pretrained: contenders
    ("nosplug.export", "nosplug.optim"),  # the export embeds the optimizer's schedules
    ("nosplug.optim", "nosplug.zoo"),  # GraphOptimizer(params, "adam") loads a zoo genome
    ("nosplug.zoo", "nosplug.optim"),  # zoo.scheduler_for builds the genome's recommended schedule
    ("nosplug.export", "nosplug.zoo"),
    ("nosplug.config", "nosplug.errors"),
    ("nosplug.tomlconfig", "nosplug.errors"),
    ("nosplug.refs", "nosplug.errors"),
    ("nosplug.plugins", "nosplug.hookspecs"),
    ("nosplug.plugins", "nosplug.version"),
    ("nosplug.evaluation", "nosplug.stats"),
    ("nosplug.cli", "nosplug"),
    ("nosplug.__main__", "nosplug.cli"),
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every nosplug module ``path`` imports, anywhere in the file (functions included)."""
    tree = ast.parse(path.read_text(), str(path))
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name.startswith("nosplug") and name != me:
                out.add(name)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(p, modules) for m, p in modules.items()}


def _layer(module: str) -> tuple[int, str]:
    best: tuple[int, str] | None = None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (
                best is None or len(prefix) > len(best[1])
            ):
                best = (i, prefix)
    assert best is not None, f"{module} is in no layer of docs/architecture.md"
    return best


def test_every_module_has_a_layer() -> None:
    for module in _modules():
        _layer(module)


def test_imports_run_down_the_layers() -> None:
    up = []
    for module, imported in sorted(_graph().items()):
        mine, my_prefix = _layer(module)
        for other in sorted(imported):
            theirs, their_prefix = _layer(other)
            if theirs > mine or (
                theirs == mine and my_prefix != their_prefix and (my_prefix, their_prefix) not in SIBLINGS
            ):
                up.append(f"{module} -> {other}")
    assert not up, "imports that run up the layers of docs/architecture.md:\n" + "\n".join(up)


def test_no_import_circles_between_files() -> None:
    graph = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, f"import circles: {circles}"


def test_the_generic_study_layer_knows_no_kind() -> None:
    """nosplug.study imports no search, benchmark, amalgamation, reporting or CLI module."""
    for module, imported in _graph().items():
        if module.startswith("nosplug.study"):
            kinds = {m for m in imported if m.split(".")[1] in ("search", "benchmark", "amalgamation", "cli")}
            assert not kinds, f"{module} imports {sorted(kinds)}"


# ----------------------------------------------------------------------------- a third party's kind
class _SquaresPlugin:
    """The kind docs/architecture.md shows, registered the way an outside package would."""

    from nosplug.hookspecs import hookimpl

    @staticmethod
    @hookimpl
    def nosplug_study_kinds():
        from nosplug.study.kinds import KindStudy
        from nosplug.study.plan import Planned, PlanResult
        from nosplug.study.result import TrialResult

        class Plan:
            def __init__(self, n: int) -> None:
                self.n = n

            def plan(self, records):
                new = [
                    Planned(f"sq/{i}", None, "sq", i, {"i": i})
                    for i in range(self.n)
                    if f"sq/{i}" not in records
                ]
                done = len(records) == self.n and all(r.finished for r in records.values())
                return PlanResult(new, done)

        class Squares(KindStudy):
            @property
            def planner(self):
                return Plan(int(self.raw["n"]))

            def evaluate(self, item, reporter, device, check):
                i = int(item.attrs["i"])
                reporter.report(float(i), 1)
                return TrialResult("complete", float(i * i), "squared", {"duration": 0.0})

        class SquaresKind:
            name, aliases, description = "squares", (), "squares of 0..n-1"

            def open(self, study):
                return Squares(study, self.name)

        return [SquaresKind()]


def test_a_plugin_study_kind_runs_on_the_generic_worker(tmp_path: Path) -> None:
    from nosplug import plugins
    from nosplug.study.kinds import NotRankedError, open_study
    from nosplug.study.studies import create_study, load
    from nosplug.study.worker import Worker

    plugins.reset()
    plugins.plugin_manager().register(_SquaresPlugin, name="squares-test")
    url = f"journal:{tmp_path / 'j.log'}"
    create_study("sq", "squares", {"n": 4, "workers": {"threads": 1, "poll_seconds": 0.05}}, storage=url)
    summary = Worker("sq", url).run()
    assert summary.done and summary.evaluated == 4
    study = load("sq", url)
    assert sorted(t.value for t in study.trials) == [0.0, 1.0, 4.0, 9.0]
    assert {t.user_attrs["reason"] for t in study.trials} == {"squared"}
    assert all(t.intermediate_values for t in study.trials)  # reported through the Reporter
    ctx = open_study(study)
    assert ctx.status()["done"] and ctx.status()["outcomes"] == {"complete": 4}
    with pytest.raises(NotRankedError, match="squares"):
        ctx.best(1)
