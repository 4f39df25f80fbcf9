"""The docs stay true: links resolve, every CLI command and option is documented, mkdocs builds."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from nosplug.cli import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        *(ROOT / "plugins").glob("*/README.md"),
        *(ROOT / "tutorials").glob("*.md"),
    ]
)
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
CLI_PAGES = ("cli.md", "amalgamation.md")


def _links() -> list[tuple[Path, str]]:
    out = []
    for page in PAGES:
        for target in LINK.findall(CODE.sub("", page.read_text())):
            if not re.match(r"^[a-z]+:", target):  # skip http:, mailto: ...
                out.append((page, target))
    return out


@pytest.mark.parametrize(("page", "target"), _links(), ids=lambda v: str(v).replace(str(ROOT), ""))
def test_relative_links_resolve(page: Path, target: str) -> None:
    assert (page.parent / target).exists(), f"{page.relative_to(ROOT)} links to missing {target}"


def _commands(group: click.Group, ctx: click.Context, prefix: tuple[str, ...] = ()):
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None:
            continue
        path = (*prefix, name)
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, click.Context(cmd, parent=ctx), path)
        else:
            yield path, cmd


ALL_COMMANDS = list(_commands(cli, click.Context(cli)))


def test_the_cli_has_the_documented_command_groups() -> None:
    groups = {path[0] for path, _ in ALL_COMMANDS}
    assert {"plugins", "genome", "evaluate", "study", "amalgamate", "report"} <= groups


@pytest.mark.parametrize(
    ("path", "cmd"), ALL_COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_command_and_option_is_documented(path: tuple[str, ...], cmd: click.Command) -> None:
    text = "\n".join((ROOT / "docs" / p).read_text() for p in CLI_PAGES)
    name = " ".join(path)
    assert re.search(rf"`(nosplug )?{re.escape(name)}\b", text), f"`nosplug {name}` is not documented"
    for param in cmd.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert any(opt in text for opt in param.opts), f"nosplug {name}: option {param.opts} undocumented"


@pytest.mark.skipif(
    shutil.which("mkdocs") is None, reason="mkdocs is not installed (the [test] extra has it)"
)
def test_mkdocs_builds_the_site_strictly(tmp_path: Path) -> None:
    out = subprocess.run(
        ["mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "paper-amalgamation" / "index.html").exists()


def test_the_plugin_guides_example_module_registers_and_works() -> None:
    """docs/plugins.md section 3 is a complete plugin: every kind it registers is usable."""
    import types

    import torch

    import nosplug
    from nosplug.amalgamation.teachers import resolve_teacher
    from nosplug.primitives.registry import registry
    from nosplug.tasks.datasets import load_dataset
    from nosplug.tasks.surrogates import build_surrogate

    text = (ROOT / "docs" / "plugins.md").read_text().split("## 3.", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    module = types.ModuleType("my_package_nosplug_more")
    exec(compile(code, "docs/plugins.md", "exec"), module.__dict__)
    nosplug.plugin_manager().register(module, name="docs-example")

    data = load_dataset("cancer", seed=0)
    assert data.input_shape == (1, 5, 6) and data.num_classes == 2 and len(data.val_y) == 57
    model = build_surrogate("linear", data.input_shape, data.num_classes, bias=False)
    assert model(data.val_x).shape == (57, 2)
    teacher = resolve_teacher("signsgd(lr=0.05)")
    delta, _ = teacher.step(torch.tensor([-2.0, 0.0, 3.0]), {}, torch.zeros(3))
    assert torch.allclose(delta, torch.tensor([-0.05, 0.0, 0.05]))
    loss = registry().get("amalgamation_losses", "minmin")
    assert float(loss.reduce(torch.tensor([[1.0, 5.0], [3.0, 2.0]]))) == 1.5
