"""Is it better than the best baseline? The benchmark's verdicts compare every contender with one
reference (tuned Adam); an optimizer is worth adopting only if it beats the best of the baselines
tuned just as hard. This module picks that baseline from the stored results and runs the same
statistics (:func:`nosplug.benchmark.stats.compare`) with it as the reference.

The best baseline is the one with the highest IQM of normalised final test scores among the
benchmark's reference and the members of its ``benchmark.baselines`` sets. Choosing it on the
same runs favours it (its IQM is the largest of several noisy ones), so a *better than the best
baseline* verdict is, if anything, harder to get than it should be: the comparison stays
conservative. Holm's correction runs over the contenders that are not baselines.
"""

from __future__ import annotations

from typing import Any

from nosplug.baselines import baseline_contenders, tuning_lines


def best_baseline(result: Any) -> str | None:
    """The baseline (reference or set member) with the highest IQM, or None before the
    statistics exist (every run of every contender, task and seed)."""
    if not result.verdicts:
        return None
    iqm = {c: v.comparison.iqm.point for c, v in result.verdicts.items()}
    iqm[result.reference] = next(iter(result.verdicts.values())).comparison.reference_iqm.point
    candidates = [c for c in baseline_contenders(result.raw) if c in iqm]
    return max(candidates, key=lambda c: (iqm[c], c == result.reference)) if candidates else None


def scores_of(result: Any, contenders: list[str]) -> dict[str, dict[str, list[float]]]:
    """Per contender and task, the final test values by seed, as the harness pools them."""
    out: dict[str, dict[str, list[float]]] = {}
    for c in contenders:
        out[c] = {}
        for t in result.tasks:
            mine = [r for r in result.runs if r.contender == c and r.task == t["label"]]
            runs = sorted(mine, key=lambda r: r.seed_index)
            out[c][t["label"]] = [r.final_test for r in runs if r.final_test is not None]
    return out


def against_best_baseline(result: Any) -> tuple[str | None, dict[str, Any]]:
    """(the best baseline, the verdict of every contender that is not a baseline against it),
    or (None, {}) before the statistics exist or when there is nothing to compare."""
    from nosplug.benchmark import stats

    best = best_baseline(result)
    if best is None:
        return None, {}
    baselines = set(baseline_contenders(result.raw))
    others = [c for c in result.contenders if c not in baselines]
    if not others:
        return best, {}
    scores = scores_of(result, [best, *others])
    directions = {t["label"]: t["direction"] for t in result.tasks}
    label, norm = f"the best baseline, tuned {best}", result.raw["benchmark"]["normalisation"]
    try:
        verdicts = stats.compare(scores, best, directions, normalisation=norm, reference_label=label)
    except ValueError:  # as the harness does: a non-positive metric falls back to min-max
        verdicts = stats.compare(scores, best, directions, normalisation="minmax", reference_label=label)
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
