"""Regenerate nosplug/zoo/data/*.json from the hand encodings below (spec §11).

The JSON files are the shipped data; this script documents how each was encoded and keeps
them reproducible. Run: ``python scripts/build_zoo.py``.
"""

from __future__ import annotations

from pathlib import Path

from nosplug.genome import DecayGraph, DecayNode, Edge, Genome, Node

OUT = Path(__file__).resolve().parents[1] / "nosplug" / "zoo" / "data"

# The schedule of the paper's final experiments: T = 96 000, W = 6 400, H = 12 800 (spec §4).
PAPER_FINAL = {
    "kind": "warmup_hold_cosine",
    "warmup": 6400 / 96000,
    "hold": 12800 / 96000,
    "cycle_momentum": True,
}
ADAM_EPS = "const(value=1e-08)"


def u(nid: str, op: str, src: Edge | str) -> Node:
    return Node(nid, 1, op, "add", [src if isinstance(src, Edge) else Edge(src)])


def b(nid: str, op: str, x: Edge | str, y: Edge | str) -> Node:
    return Node(nid, 2, "identity", op, [e if isinstance(e, Edge) else Edge(e) for e in (x, y)])


def d(src: str, out: DecayNode, hidden: DecayNode | None = None) -> Edge:
    """An edge from ``src`` carrying the decay graph (out, hidden)."""
    return Edge(src, DecayGraph(hidden or DecayNode(1, "identity", "add", ["a1"]), out))


def du(op: str, src: str) -> DecayNode:
    return DecayNode(1, op, "add", [src])


def db(op: str, x: str, y: str) -> DecayNode:
    return DecayNode(2, "identity", op, [x, y])


ERFC_ERFC_A4 = (du("erfc", "hidden"), du("erfc", "a4"))  # (out, hidden)
DTANH_A8 = (du("dtanh", "a8"), None)


def dec(src: str, graph: tuple[DecayNode, DecayNode | None]) -> Edge:
    return d(src, graph[0], graph[1])


def genome(nodes, *, momentum="none", nesterov="standard", **meta) -> Genome:
    return Genome(nodes, momentum, nesterov, False, meta).validate()


def adam_paper_nodes(
    ecorr: Edge | str = "v_hat", scorr: Edge | str = "s_hat", out_den: str = "h0"
) -> list[Node]:
    return [u("h0", "sqrt_abs", scorr), b("out", "div", ecorr, out_den)]


def build() -> dict[str, Genome]:
    z: dict[str, Genome] = {}
    torch_src = "torch.optim defaults, exact"
    z["adam"] = genome(
        [
            u("h0", "sqrt_abs", "ema(power=2, beta=0.999)"),
            b("h1", "add", "h0", ADAM_EPS),
            b("out", "div_exact", "ema(power=1, beta=0.9)", "h1"),
        ],
        name="adam",
        description="Adam with torch.optim.Adam's defaults (betas 0.9/0.999, eps 1e-8)",
        source=torch_src,
        defaults={"lr": 1e-3},
    )
    z["rmsprop"] = genome(
        [
            u("h0", "sqrt_abs", "ema(power=2, beta=0.99, bias_correction=false)"),
            b("h1", "add", "h0", ADAM_EPS),
            b("out", "div_exact", "g", "h1"),
        ],
        name="rmsprop",
        description="RMSprop with torch.optim.RMSprop's defaults (alpha 0.99, eps 1e-8)",
        source=torch_src,
        defaults={"lr": 1e-2},
    )
    z["sgd"] = genome(
        [u("h0", "identity", "g"), u("out", "identity", "h0")],
        name="sgd",
        description="plain SGD",
        source=torch_src,
        defaults={"lr": 1e-3},
    )
    z["momentum"] = genome(
        [u("h0", "identity", "g"), u("out", "identity", "h0")],
        momentum="momentum",
        name="momentum",
        description="heavy-ball SGD, torch.optim.SGD(momentum=0.9)",
        source=torch_src,
        defaults={"lr": 1e-3, "momentum": 0.9},
    )
    z["nesterov"] = genome(
        [u("h0", "identity", "g"), u("out", "identity", "h0")],
        momentum="nesterov",
        name="nesterov",
        description="torch.optim.SGD(momentum=0.9, nesterov=True)",
        source=torch_src,
        defaults={"lr": 1e-3, "momentum": 0.9},
    )
    bello = "Bello et al. 2017: m is an EMA of g with beta 0.9, alpha = 1"
    z["addsign"] = genome(
        [b("h0", "mul", "sign_g", "sign_v_hat"), b("h1", "add", "one", "h0"), b("out", "mul", "h1", "g")],
        name="addsign",
        description="AddSign: (1 + sign(g) sign(m)) g",
        source=bello,
        defaults={"lr": 1e-3},
    )
    z["powersign"] = genome(
        [b("h0", "mul", "sign_g", "sign_v_hat"), u("h1", "exp", "h0"), b("out", "mul", "h1", "g")],
        name="powersign",
        description="PowerSign: e^(sign(g) sign(m)) g",
        source=bello,
        defaults={"lr": 1e-3},
    )
    z["qhm"] = genome(
        [u("h0", "identity", "qhm_g"), u("out", "identity", "h0")],
        name="qhm",
        description="quasi-hyperbolic momentum term 0.3 g + 0.7 v_hat (the paper's operand 14)",
        source="Ma & Yarats 2019, with the paper's nu 0.7 and beta 0.9",
        defaults={"lr": 1e-2},
    )
    z["signsgd"] = genome(
        [u("h0", "identity", "sign_g"), u("out", "identity", "h0")],
        name="signsgd",
        description="sign descent",
        source="Bernstein et al. 2018",
        defaults={"lr": 1e-4},
    )
    z["signum"] = genome(
        [u("h0", "identity", "sign_v_hat"), u("out", "identity", "h0")],
        name="signum",
        description="sign of the momentum",
        source="Bernstein et al. 2018",
        defaults={"lr": 1e-4},
    )
    z["adam-paper"] = genome(
        adam_paper_nodes(),
        name="adam-paper",
        description="Adam in the paper's search space: v_hat / (sqrt(|s_hat|) + 1e-7), beta2 0.99",
        source="spec §11.2 (hand encoding inferred from the operand set)",
        defaults={"lr": 1e-3},
        schedule=PAPER_FINAL,
    )

    nos = "Morgan & Hougen 2024, spec §11.1"
    fin = {"source": nos, "schedule": PAPER_FINAL, "defaults": {"lr": 1e-2}}
    lr1_out = lambda den: b("out", "div", dec("qhm_g", ERFC_ERFC_A4), dec(den, DTANH_A8))  # noqa: E731
    z["opt1"] = genome(
        [
            b("h0", "sub", "w_1e-5", "qhm_g2"),
            b("h1", "clip", "w_1e-5", "h0"),
            u("h2", "softsign", "h1"),
            b("out", "add", "qhm_g", "h2"),
        ],
        name="opt1",
        description="q + softsign(clip(1e-5 w, 1e-5 w - (0.05 g^2 + 0.95 s_hat)))",
        **fin,
    )
    z["opt2"] = genome(
        [
            b("h0", "sub", "w_1e-5", "qhm_g2"),
            b("h1", "div_sqrt1p", "w_1e-5", "h0"),
            u("h2", "softsign", "h1"),
            b("out", "add", "qhm_g", "h2"),
        ],
        name="opt2",
        description="q + softsign(1e-5 w / sqrt(1 + e^2)), e = 1e-5 w - (0.05 g^2 + 0.95 s_hat)",
        **fin,
    )
    z["opt3"] = genome(
        [
            b("h0", "sub", "w_1e-5", "qhm_g3"),
            b("h1", "div_sqrt1p", "w_1e-5", "h0"),
            u("h2", "softsign", "h1"),
            b("out", "add", "qhm_g", "h2"),
        ],
        name="opt3",
        description="q + softsign(1e-5 w / sqrt(1 + l^2)), l = 1e-5 w - (0.01 g^3 + 0.99 lam_hat)",
        **fin,
    )
    z["opt4"] = genome(
        [u("h0", "exp", "v_hat"), b("h1", "clip", "two", d("h0", du("atan", "a13"))), lr1_out("h1")],
        name="opt4",
        description="q / min(2, |atan(a13) exp(v_hat)|), LR x LR1",
        **fin,
    )
    z["opt5"] = genome(
        [u("h0", "exp", "v_hat"), b("h1", "clip", "two", "h0"), lr1_out("h1")],
        name="opt5",
        description="q / min(2, exp(v_hat)), LR x LR1",
        **fin,
    )
    z["opt6"] = genome(
        [u("h0", "exp", "w_1e-4"), u("h1", "abs", d("h0", du("dtanh", "a4"))), lr1_out("h1")],
        name="opt6",
        description="q / |dtanh(a4) exp(1e-4 w)|, LR x LR1 (total LR2)",
        **fin,
    )
    max_a6_a10 = db("max", "a6", "a10")
    z["opt7"] = genome(
        [u("h0", "asinh", "qhm_g"), u("out", "tanh", d("h0", max_a6_a10))],
        name="opt7",
        description="tanh(max(a6, a10) asinh(q))",
        **fin,
    )
    z["opt8"] = genome(
        [u("h0", "asinh", "qhm_g"), u("out", "asinh", d("h0", max_a6_a10))],
        name="opt8",
        description="asinh(max(a6, a10) asinh(q))",
        **fin,
    )
    z["opt9"] = genome(
        [u("h0", "atan", "qhm_g2"), u("h1", "exp", "h0"), b("out", "mul", d("g", du("erfc", "a11")), "h1")],
        momentum="nesterov",
        name="opt9",
        description="Nesterov: erfc(a11) g exp(atan(0.05 g^2 + 0.95 s_hat))",
        **fin,
    )
    z["opt10"] = genome(
        [u("h0", "bessel_i1e", d("g", db("mul", "a13", "a2"))), u("out", "bessel_i1e", "h0")],
        momentum="nesterov",
        name="opt10",
        description="Nesterov: i1e(i1e(a13 a2 g))",
        **fin,
    )

    ada = {"source": "spec §11.2 (AdamClip variants)", "schedule": PAPER_FINAL, "defaults": {"lr": 1e-3}}
    z["a1"] = genome(
        [u("h0", "sqrt_abs", "s_hat"), b("out", "clip", "v_hat", "h0")],
        name="a1",
        description="clip(v_hat, +-sqrt(s_hat))",
        **ada,
    )
    z["a2"] = genome(
        [u("h0", "ln_abs", "s_hat"), b("out", "clip", "v_hat", "h0")],
        name="a2",
        description="clip(v_hat, +-|ln(s_hat + 1e-7)|)",
        **ada,
    )
    z["a3"] = genome(
        [u("h0", "ln_abs", "s_hat"), u("h1", "sqrt_abs", "h0"), b("out", "clip", "v_hat", "h1")],
        name="a3",
        description="clip(v_hat, +-sqrt|ln(s_hat + 1e-7)|)",
        **ada,
    )
    z["a4"] = genome(
        [u("h0", "sigmoid", "s_hat"), b("out", "clip", "v_hat", "h0")],
        name="a4",
        description="clip(v_hat, +-sigmoid(s_hat))",
        **ada,
    )
    z["a5"] = genome(
        [u("h0", "sqrt_abs", "s_hat"), b("h1", "clip", "v_hat", "h0"), u("out", "clip_norm", "h1")],
        name="a5",
        description="norm(clip(v_hat, +-sqrt(s_hat)))",
        **ada,
    )

    lrs = {
        "source": "spec §11.3 (multipliers on the paper-space Adam)",
        "schedule": PAPER_FINAL,
        "defaults": {"lr": 1e-3},
    }
    sq = lambda sched: d("s_hat", sched[0], sched[1])  # noqa: E731
    z["lr1"] = genome(
        [u("h0", "sqrt_abs", "s_hat"), b("out", "div", dec("v_hat", ERFC_ERFC_A4), dec("h0", DTANH_A8))],
        name="lr1",
        description="Adam x erfc(erfc(a4)) / dtanh(a8)",
        **lrs,
    )
    z["lr2"] = genome(
        [
            u("h0", "sqrt_abs", "s_hat"),
            u("h1", "identity", d("h0", du("dtanh", "a4"))),
            b("out", "div", dec("v_hat", ERFC_ERFC_A4), dec("h1", DTANH_A8)),
        ],
        name="lr2",
        description="Adam x erfc(erfc(a4)) / (dtanh(a8) dtanh(a4))",
        **lrs,
    )
    z["lr3"] = genome(
        [
            u("h0", "sqrt_abs", "s_hat"),
            u("h1", "identity", d("h0", du("sqrt_abs", "hidden"), du("dsoft", "a14"))),
            b("out", "div", d("v_hat", du("atan", "a2")), d("h1", du("dtanh", "a10"))),
        ],
        name="lr3",
        description="Adam x atan(a2) / (dtanh(a10) sqrt(dsoft(a14))), search-time a14",
        **lrs,
    )
    z["lr4"] = genome(
        [
            u("h0", "sqrt_abs", "s_hat"),
            u("h2", "sigmoid", d("two", du("softsign", "a1"))),
            b("h1", "mul", "h0", "h2"),
            b("out", "div", d("v_hat", du("square", "hidden"), du("sigmoid", "a2")), "h1"),
        ],
        name="lr4",
        description="Adam x sigmoid(a2)^2 / sigmoid(2 softsign(a1))",
        **lrs,
    )
    z["lr5"] = genome(
        adam_paper_nodes(scorr=d("s_hat", du("erf", "a11"))),
        name="lr5",
        description="Adam x 1 / sqrt(erf(a11))",
        **lrs,
    )
    z["lr6"] = genome(
        [
            u("h0", "sqrt_abs", d("s_hat", du("dsoft", "a6"))),
            u("h1", "identity", d("v_hat", du("erfc", "a6"))),
            b("out", "div", d("h1", du("atan", "a2")), "h0"),
        ],
        name="lr6",
        description="Adam x atan(a2) erfc(a6) / sqrt(dsoft(a6))",
        **lrs,
    )
    z["lr7"] = genome(
        adam_paper_nodes(scorr=d("s_hat", du("dsoft", "a10"))),
        name="lr7",
        description="Adam x 1 / sqrt(dsoft(a10)) = sqrt(1 + a10)",
        **lrs,
    )
    z["lr8"] = genome(
        adam_paper_nodes(scorr=sq((du("softsign", "hidden"), du("atan", "a12")))),
        name="lr8",
        description="Adam x 1 / sqrt(softsign(atan(a12)))",
        **lrs,
    )
    z["lr9"] = genome(
        adam_paper_nodes(ecorr=d("v_hat", du("tanh", "hidden"), db("max", "a10", "a6"))),
        name="lr9",
        description="Adam x tanh(max(a10, a6))",
        **lrs,
    )
    return z


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.json"):
        old.unlink()
    for name, g in build().items():
        (OUT / f"{name}.json").write_text(g.to_json(indent=1) + "\n")
    print(f"wrote {len(list(OUT.glob('*.json')))} genomes to {OUT}")


if __name__ == "__main__":
    main()
