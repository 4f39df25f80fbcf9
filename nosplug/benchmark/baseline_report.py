"""What a benchmark states beside its verdict table: each contender's tuning space and recipe
(:func:`tuning_lines`), and whether it is better than the best baseline.

Is it better than the best baseline? The benchmark's verdicts compare every contender with one
reference (tuned Adam); an optimizer is worth adopting only if it beats the best of the baselines
tuned just as hard. This module picks that baseline from the stored results and runs the same
statistics (:func:`nosplug.benchmark.design.compare_units`) with it as the reference.

The best baseline is the one with the highest IQM of normalised final test scores among the
benchmark's reference and the members of its ``benchmark.baselines`` sets. Choosing it on the
same runs favours it (its IQM is the largest of several noisy ones), so a *better than the best
baseline* verdict is, if anything, harder to get than it should be: the comparison stays
conservative. Holm's correction runs over the contenders that are not baselines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nosplug.baselines import baseline_contenders, recipe_of
from nosplug.errors import UserError


def tuning_lines(raw: Mapping[str, Any]) -> list[str]:
    """Each contender's tuning space and recipe, one line each, to print below a verdict table:
    the budget (the same for all), then per contender what is tuned over which range and how it
    runs (schedule, recipe)."""
    from nosplug.benchmark.contenders import EXTRA_TUNING
    from nosplug.refs import RefError, parse_ref

    tu = raw["tuning"]
    lo, hi = tu["lr"]
    unequal = tu.get("per_contender") or {}
    lines = [
        f"tuning: {tu['trials']} {str(tu.get('sampler', 'tpe')).upper()} trial(s) per contender and task, "
        "the same for every contender"
        + (f" except {unequal} (unequal budgets allowed by the config)" if unequal else "")
    ]
    for spec in raw["benchmark"]["contenders"]:
        try:
            ref = parse_ref(spec)
        except RefError:
            continue
        if ref.kind in ("student", "pretrained"):
            lines.append(
                f"{spec}: its SGD warm-up rate log-uniform in [0.001, 1]; a learned optimizer, no schedule"
            )
            continue
        parts = [
            f"lr log-uniform in [{lo:g}, {hi:g}]",
            f"warm-up fraction in [0, {float(tu['max_warmup']):g}]",
        ]
        for name in tu["extra"].get(spec, ()):
            d = EXTRA_TUNING.get(name)
            if d is not None:
                parts.append(f"{name} {'log-uniform ' if d.log else ''}in [{d.low:g}, {d.high:g}]")
        if ref.kind == "class":
            how = recipe_of(spec) or _class_recipe(ref)
        else:
            how = "warm-up, hold, cosine decay; the genome's momentum cycles as in the paper"
        lines.append(f"{spec}: {', '.join(parts)}; {how}")
    return lines


def _class_recipe(ref) -> str:
    from nosplug.baselines.recipes import SCHEDULE_FREE_RECIPE, is_schedule_free

    try:
        cls = ref.import_class()
    except UserError:
        return "warm-up, then cosine decay to 0"
    return SCHEDULE_FREE_RECIPE if is_schedule_free(cls) else "warm-up, then cosine decay to 0"


def best_baseline(result: Any) -> str | None:
    """The baseline (reference or set member) with the highest IQM, or None before the
    statistics exist (every run of every contender, task and seed)."""
    if not result.verdicts:
        return None
    iqm = {c: v.comparison.iqm.point for c, v in result.verdicts.items()}
    iqm[result.reference] = next(iter(result.verdicts.values())).comparison.reference_iqm.point
    candidates = [c for c in baseline_contenders(result.raw) if c in iqm]
    return max(candidates, key=lambda c: (iqm[c], c == result.reference)) if candidates else None


def against_best_baseline(result: Any) -> tuple[str | None, dict[str, Any]]:
    """(the best baseline, the verdict of every contender that is not a baseline against it),
    or (None, {}) before the statistics exist or when there is nothing to compare."""
    from nosplug.benchmark import design as bdesign

    best = best_baseline(result)
    if best is None:
        return None, {}
    baselines = set(baseline_contenders(result.raw))
    others = [c for c in result.contenders if c not in baselines]
    if not others:
        return best, {}
    runs = [r for r in result.runs if r.final_test is not None]
    finals = {(r.contender, r.task, r.seed_index): float(r.final_test) for r in runs}
    labels = [t["label"] for t in result.tasks]
    scores = bdesign.unit_scores(result.design, [best, *others], labels, finals)
    verdicts, _norm = bdesign.compare_units(result.raw, scores, best, f"the best baseline, tuned {best}")
    return best, verdicts


def report_lines(result: Any) -> list[str]:
    """What to print below a verdict table: each contender's tuning space and recipe, then (when
    the benchmark has baseline sets) every other contender against the best baseline."""
    lines = tuning_lines(result.raw)
    if not result.raw["benchmark"].get("baselines"):
        return lines
    best, verdicts = against_best_baseline(result)
    if best is None:
        return [*lines, "against the best baseline: pending (the statistics need every run)"]
    lines.append(f"the best baseline (highest IQM among the reference and the baseline sets): {best}")
    lines += [f"{c}: {v.outcome} against it: {v.sentence}" for c, v in verdicts.items()]
    return lines


def report_json(result: Any) -> dict[str, Any]:
    """:func:`report_lines` as data: tuning lines, the best baseline and the verdicts against it."""
    best, verdicts = against_best_baseline(result) if result.raw["benchmark"].get("baselines") else (None, {})
    return {
        "tuning": tuning_lines(result.raw),
        "best_baseline": best,
        "against_best_baseline": {
            c: {"outcome": v.outcome, "sentence": v.sentence, "p_corrected": v.comparison.test.p_corrected}
            for c, v in verdicts.items()
        },
    }
