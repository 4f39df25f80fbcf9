"""Tutorial 3: write, install and use an operand plugin.

**Goal.** Extend nosplug's search space with your own operand, shipped as an ordinary Python
package, without touching nosplug. The operand is a Nesterov-style look-ahead gradient
``g + 0.9*b`` with ``b`` the heavy-ball momentum buffer (``b <- 0.9*b + g``), which is the step
direction of ``torch.optim.SGD(momentum=0.9, nesterov=True)``.

**How nosplug finds plugins.** Everything nosplug searches over (operands, operations, decay
schedules, datasets, surrogates, teachers, ...) comes from pluggy hooks, and plugins are found
through the entry-point group ``nosplug``. The built-in primitives are plugins registered the
same way. A plugin package therefore needs two things: a module with ``@hookimpl`` functions and
one line in its ``pyproject.toml`` (docs/plugins.md).

**Operands and operand families.** An *operand* is a leaf of the update graph, computed from
the gradient, the weight and optimizer state; ``requires`` declares the EMA slots it reads, and
operands that read the same EMA share one buffer. An *operand family* is a parameterised operand
that a genome references as a call, ``lookahead(mu=0.95, beta=0.95)``; the paper's 20 operands
are fixed instances of built-in families (``v_hat`` is ``ema(power=1, beta=0.9)``). This plugin
registers both: the fixed operand ``nag_g`` and the family ``lookahead``.

**Steps.** Write the package; ``pip install`` it into a private folder (``--target``, put on
``PYTHONPATH`` for the commands that should see it, so nothing in your environment changes);
``nosplug plugins list`` shows it; genome files use it; ``nosplug genome show`` and
``nosplug evaluate`` work with it; a short check proves the genome equals torch's Nesterov SGD;
``-p no:lookahead`` disables it, and the genome is then refused with a clear message.

Run it: ``python tutorials/03_write_an_operand_plugin.py [--full] [--workdir DIR]`` (under a
minute; ``--full`` evaluates with the ``quick`` preset on MNIST-5k instead of ``smoke`` on digits).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import _tutorial

PLUGIN_NAME = "lookahead"  # the entry-point name: what `plugins list` shows and `-p no:` disables

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "nosplug-lookahead"
version = "0.1.0"
description = "A Nesterov look-ahead gradient operand for nosplug"
requires-python = ">=3.10"
dependencies = ["nosplug"]

# The line that makes this a nosplug plugin: entry-point group "nosplug", name = module.
[project.entry-points.nosplug]
lookahead = "nosplug_lookahead"

[tool.setuptools.packages.find]
where = ["src"]
"""

PLUGIN_MODULE = '''\
"""nosplug plugin: Nesterov look-ahead gradients g + mu*b, b the heavy-ball momentum buffer."""

from __future__ import annotations

from dataclasses import replace

import torch

from nosplug.hookspecs import hookimpl
from nosplug.primitives import EMASpec, Operand, OperandContext, OperandFamily

TAGS = frozenset({"lookahead"})  # tags put primitives into named search spaces ("paper" = the paper's)


def lookahead(mu: float = 0.9, beta: float = 0.9) -> Operand:
    """g + mu * b with b = sum_k beta^k g_(t-k), the buffer of torch's SGD(momentum=beta)."""
    spec = EMASpec(power=1, beta=float(beta))  # nosplug keeps this EMA: e <- beta*e + (1-beta)*g
    mu, scale = float(mu), 1.0 / (1.0 - float(beta))

    def compute(ctx: OperandContext) -> torch.Tensor:
        # the EMA is already updated with this step's gradient when operands are computed;
        # dividing by (1 - beta) turns the EMA into torch's undamped momentum buffer
        return ctx.g + (mu * scale) * ctx.ema(spec)

    return Operand(
        "lookahead",
        compute,
        text=f"(g + {mu:g}*b_{beta:g})",
        latex=f"(g + {mu:g}\\\\,b_{{{beta:g}}})",
        requires=(spec,),  # declare the EMA slot: the optimizer stores only what genomes read
        tags=TAGS,
        description="Nesterov look-ahead gradient",
    )


@hookimpl
def nosplug_operands() -> list[Operand]:
    # a fixed instance with its own short name, usable like the paper's operands
    return [replace(lookahead(0.9, 0.9), name="nag_g", text="nag_g", latex="g_{nag}")]


@hookimpl
def nosplug_operand_families() -> list[OperandFamily]:
    # the parameterised form: genomes may write lookahead(mu=0.95, beta=0.95)
    return [OperandFamily("lookahead", lookahead, {"mu": 0.9, "beta": 0.9}, lookahead.__doc__ or "")]
'''

# A genome whose update is the operand itself: w <- w - lr * (g + 0.9*b), i.e. Nesterov SGD.
NAG_GENOME = {
    "format": "nosplug-genome",
    "version": 1,
    "momentum": "none",  # the momentum lives in the operand here, not in the genome's update rule
    "nodes": [{"id": "out", "arity": 1, "unary": "identity", "binary": "add", "inputs": ["nag_g"]}],
    "meta": {
        "name": "nag",
        "description": "Nesterov SGD from the lookahead plugin",
        "defaults": {"lr": 0.05},
    },
}

# The family in a richer genome: an Adam-like normalisation of a look-ahead with other constants.
FAMILY_GENOME = {
    "format": "nosplug-genome",
    "version": 1,
    "nodes": [
        {"id": "h0", "arity": 1, "unary": "sqrt_abs", "binary": "add", "inputs": ["s_hat"]},
        {
            "id": "h1",
            "arity": 2,
            "unary": "identity",
            "binary": "add",
            "inputs": ["h0", "const(value=1e-08)"],
        },
        {
            "id": "out",
            "arity": 2,
            "unary": "identity",
            "binary": "div_exact",
            "inputs": ["lookahead(beta=0.95, mu=0.95)", "h1"],
        },
    ],
    "meta": {"name": "nadam-ish", "description": "look-ahead / sqrt(s_hat)", "defaults": {"lr": 0.001}},
}

# Run with PYTHONPATH=site: the genome must match torch.optim.SGD(momentum=0.9, nesterov=True).
CHECK = """\
import sys, torch, nosplug
genome = nosplug.zoo.load(sys.argv[1])  # a genome file path works like a zoo name
torch.manual_seed(0)
w1 = torch.randn(50, requires_grad=True)
w2 = w1.detach().clone().requires_grad_(True)
ours = nosplug.GraphOptimizer([w1], genome, lr=0.05)
ref = torch.optim.SGD([w2], lr=0.05, momentum=0.9, nesterov=True)
for _ in range(20):
    g = torch.randn(50)
    w1.grad, w2.grad = g.clone(), g.clone()
    ours.step(); ref.step()
gap = (w1 - w2).abs().max().item()
print(f"max |w_nosplug - w_torch| after 20 steps: {gap:.2e}; equal: {torch.allclose(w1, w2, atol=1e-5)}")
print("plugin of nag_g:", nosplug.registry().provenance[("operands", "nag_g")])
"""


def main(argv: list[str] | None = None) -> None:
    opts = _tutorial.parse_args(__doc__, "03", argv)
    work = opts.workdir
    site = work / "site"  # where pip installs the package; only processes given PYTHONPATH see it
    with_plugin = {**opts.env, "PYTHONPATH": str(site)}

    # ------------------------------------------------------------------------------------------
    _tutorial.step(1, "write the plugin package")
    pkg = work / "nosplug-lookahead"
    module = pkg / "src" / "nosplug_lookahead" / "__init__.py"
    module.parent.mkdir(parents=True, exist_ok=True)
    (pkg / "pyproject.toml").write_text(PYPROJECT)
    module.write_text(PLUGIN_MODULE)
    for path in (pkg / "pyproject.toml", module):
        print(f"--- {path.relative_to(work)}")
        print(path.read_text())

    # ------------------------------------------------------------------------------------------
    _tutorial.step(2, "pip install it into a private folder")
    # --target keeps your environment untouched; --no-deps because nosplug is already installed;
    # --no-build-isolation builds with the setuptools you have (no download). In a real project
    # you would simply `pip install ./nosplug-lookahead` (or publish it and `pip install` by name).
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    cmd += ["--target", str(site), str(pkg)]
    print(f"$ pip install --no-deps --no-build-isolation --target {site} {pkg}")
    started = time.perf_counter()
    pip = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=work)
    if pip.returncode != 0:
        raise SystemExit(f"pip install failed:\n{pip.stdout}\n{pip.stderr}")
    dist = sorted(p.name for p in site.iterdir())
    print(f"installed in {time.perf_counter() - started:.1f} s: {dist}")
    entry_points = next(site.glob("nosplug_lookahead-*.dist-info")) / "entry_points.txt"
    print(f"{entry_points.relative_to(work)}:\n{entry_points.read_text().strip()}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(3, "nosplug plugins list shows it")
    _tutorial.run_nosplug("plugins", "list", cwd=work, env=with_plugin)
    listed = json.loads(
        _tutorial.run_nosplug("plugins", "list", "--json", cwd=work, env=with_plugin, show=False).stdout
    )
    ours = next(p for p in listed["plugins"] if p["name"] == PLUGIN_NAME)
    print(f"our entry (from --json): {ours['name']} {ours['version']} registers {ours['registers']}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(4, "use the operand and the family in genome files")
    nag_file, family_file = work / "nag.json", work / "nadam-ish.json"
    nag_file.write_text(json.dumps(NAG_GENOME, indent=1))
    family_file.write_text(json.dumps(FAMILY_GENOME, indent=1))
    print(f"{nag_file.name}: {json.dumps(NAG_GENOME['nodes'])}")
    print(f"{family_file.name}: out = lookahead(beta=0.95, mu=0.95) / (sqrt(|s_hat|) + 1e-8)")
    _tutorial.run_nosplug("genome", "show", str(nag_file), str(family_file), cwd=work, env=with_plugin)

    # ------------------------------------------------------------------------------------------
    _tutorial.step(5, "check the genome against torch's Nesterov SGD")
    # Your own code sees the plugin exactly like the CLI does: through the installed entry point.
    check = work / "check_nag.py"
    check.write_text(CHECK)
    print(f"$ PYTHONPATH={site} python {check.name} {nag_file.name}")
    out = subprocess.run(
        [sys.executable, str(check), str(nag_file)],
        capture_output=True, text=True, timeout=300, cwd=work, env=_tutorial.nosplug_env(with_plugin),
    )  # fmt: skip
    print(out.stdout.strip() or out.stderr.strip())
    if out.returncode != 0:
        raise SystemExit(f"the check failed:\n{out.stderr}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(6, "evaluate the genomes like any other")
    # The evaluation protocol of the search (integrity check, learning-rate sweep, final run),
    # here on scikit-learn's digits with the `smoke` budget (seconds); --full uses MNIST-5k.
    dataset, preset = ("mnist5k", "quick") if opts.full else ("digits", "smoke")
    files = (str(nag_file), str(family_file))
    # The table: integrity check, best training accuracy at each rate of the sweep, the chosen
    # rate and the best validation accuracy of the final run.
    _tutorial.run_nosplug(
        "evaluate", *files, "--dataset", dataset, "--preset", preset, cwd=work, env=with_plugin
    )
    # --json prints one object per genome, for scripts (evaluations are seeded: same numbers).
    evaluated = _tutorial.run_nosplug(
        "evaluate", *files, "--dataset", dataset, "--preset", preset, "--json",
        cwd=work, env=with_plugin, show=False,
    )  # fmt: skip
    results = [json.loads(line) for line in evaluated.stdout.splitlines() if line.startswith("{")]
    for r in results:
        fitness = "-" if r["fitness"] is None else f"{r['fitness']:.4f}"
        name = Path(r["genome"]).name
        print(f"{name}: {r['status']}, validation accuracy {fitness}, chosen lr {r['chosen_lr']}")

    # ------------------------------------------------------------------------------------------
    _tutorial.step(7, "disable the plugin: -p no:lookahead")
    # Like pytest's -p no:NAME; NOSPLUG_DISABLE_PLUGINS=lookahead does the same for every command.
    # A genome that needs the operand is then refused with one line naming it (exit status 2).
    refused = _tutorial.run_nosplug(
        "-p", f"no:{PLUGIN_NAME}", "genome", "show", str(nag_file), cwd=work, env=with_plugin, check=False
    )
    listed_off = json.loads(
        _tutorial.run_nosplug(
            "-p", f"no:{PLUGIN_NAME}", "plugins", "list", "--json", cwd=work, env=with_plugin, show=False
        ).stdout
    )
    still_listed = any(p["name"] == PLUGIN_NAME for p in listed_off["plugins"])
    print(f"with -p no:{PLUGIN_NAME}: genome show exits {refused.returncode}; listed: {still_listed}")
    print(
        textwrap.dedent(f"""
        To put the operand into a search, name it in a study config:
            [space]
            operands = ["g", "v_hat", "s_hat", "nag_g", "lookahead(mu=0.95, beta=0.95)"]
        and start the workers with PYTHONPATH={site} (or install the package normally).""")
    )

    fitness = {Path(r["genome"]).stem: r["fitness"] for r in results}
    print(
        f"\nsummary: listed={ours['name']} operands={','.join(ours['registers'].get('operands', []))} "
        f"families={','.join(ours['registers'].get('operand_families', []))} "
        f"nag_fitness={fitness.get('nag')} family_fitness={fitness.get('nadam-ish')} "
        f"disabled_exit={refused.returncode}"
    )


if __name__ == "__main__":
    main()
