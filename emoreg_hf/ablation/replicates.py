"""The stage-1 model as the unit of analysis (`analysis.unit: stage1_model`, issue 28): a nested study reads
stage-1 seed `stage1_seeds[i % len]` from stage-2 seed number i, so the stage-2 seeds that share one stage-1
model are not independent replicates of stage 1. Each arm's accuracy per stage-1 model is the mean over those
stage-2 seeds (the comparator's over the same stage-2 seeds); comparisons are paired over stage-1 models; and a
one-way random-effects ANOVA tells the spread between stage-1 models (tau) from stage-2 training's (sigma),
with what they imply for the next design's number of stage-1 models."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .. import stats

STAGE2_SEEDS_PER_MODEL = (1, 2)  # the next designs the power statement sizes


def stage1_seed_at(index: int, stage1_seeds: Sequence[int]) -> int:
    """The stage-1 seed that the study's stage-2 seed number `index` reads (`config.stage1_seed`): the rule
    that both the runs and their grouping here follow."""
    return stage1_seeds[index % len(stage1_seeds)]


def stage1_groups(seeds: Sequence[int], stage1_seeds: Sequence[int]) -> dict[int, list[int]]:
    """`{stage-1 seed: [the stage-2 seeds that read it]}`, as the runs read them (`stage1_seed_at`)."""
    groups: dict[int, list[int]] = {s: [] for s in stage1_seeds}
    for index, seed in enumerate(seeds):
        groups[stage1_seed_at(index, stage1_seeds)].append(seed)
    return groups


def values(records: Mapping[str, Mapping[int, Mapping]], method: str, key: str) -> dict[int, float]:
    """`{seed: records[method][seed][key]}` for the seeds where it is a finite number."""
    return {
        int(seed): float(r[key])
        for seed, r in records.get(method, {}).items()
        if r.get(key) is not None and math.isfinite(float(r[key]))
    }


def unit_means(
    a: Mapping[int, float], b: Mapping[int, float], groups: Mapping[int, Sequence[int]]
) -> tuple[dict[int, float], dict[int, float]]:
    """Per stage-1 seed, `a`'s and `b`'s mean over the stage-2 seeds of that model both have (a model
    neither has a seed of is left out)."""
    out_a, out_b = {}, {}
    for model, seeds in groups.items():
        common = [s for s in seeds if s in a and s in b]
        if common:
            out_a[model] = math.fsum(a[s] for s in common) / len(common)
            out_b[model] = math.fsum(b[s] for s in common) / len(common)
    return out_a, out_b


def comparison(
    records: Mapping[str, Mapping[int, Mapping]],
    pair: Sequence[str],
    key: str,
    groups: Mapping[int, Sequence[int]],
    margin: float,
    alpha: float,
) -> dict[str, Any]:
    """`pair[0] - pair[1]` paired over stage-1 models (n = the models both arms have a stage-2 seed of), with
    its TOST against ±`margin`; the per-model means are kept (`unit_values`)."""
    method, versus = pair
    a, b = unit_means(values(records, method, key), values(records, versus, key), groups)
    difference = stats.paired_difference(a, b, 1 - alpha)
    return {
        "method": method,
        "versus": versus,
        **difference,
        "unit": "stage1_model",
        "unit_values": {str(m): {"method": a[m], "versus": b[m]} for m in sorted(a)},
        "equivalence": stats.equivalence(difference, margin, alpha),
    }


def _complete(values: Mapping[int, float], groups: Mapping[int, Sequence[int]]) -> list[list[float]]:
    """The groups whose every stage-2 seed has a value (the ANOVA is for a balanced design)."""
    return [
        [values[s] for s in seeds] for seeds in groups.values() if seeds and all(s in values for s in seeds)
    ]


def between_models(
    values: Mapping[int, float],
    groups: Mapping[int, Sequence[int]],
    margin: float,
    confidence: float = stats.CONFIDENCE,
) -> dict[str, Any] | None:
    """`stats.random_effects` over the stage-1 models (the complete ones; None with fewer than 2 or a single
    stage-2 seed per model), and the stage-1 models the next design needs for 80% power at `margin` with 1
    and 2 stage-2 seeds per model: a model's mean difference then varies as tau^2 + sigma^2 / k (at tau's
    estimate, and at its interval's upper end)."""
    complete = _complete(values, groups)
    if len(complete) < 2 or len(complete[0]) < 2:
        return None
    out = stats.random_effects(complete, confidence)
    tau_high = out["tau_interval"][1]
    out["next_design"] = [
        {
            "stage2_seeds_per_model": k,
            "margin": margin,
            "models": stats.models_for_power(
                margin, math.sqrt(out["tau"] ** 2 + out["sigma"] ** 2 / k), confidence=confidence
            ),
            "models_at_tau_high": stats.models_for_power(
                margin, math.sqrt(tau_high**2 + out["sigma"] ** 2 / k), confidence=confidence
            ),
        }
        for k in STAGE2_SEEDS_PER_MODEL
    ]
    return out


def tau(
    records: Mapping[str, Mapping[int, Mapping]],
    primary: Sequence[str],
    arms: Sequence[str],
    key: str,
    groups: Mapping[int, Sequence[int]],
    margin: float,
    confidence: float = stats.CONFIDENCE,
) -> dict[str, Any]:
    """Between-stage-1-model spread of each arm in `arms` (those reading a stage 1) and of the primary
    difference per stage-2 seed: `{"arms": {method: between_models}, "primary": between_models}`."""
    first, second = (values(records, m, key) for m in primary)
    difference = {s: first[s] - second[s] for s in first if s in second}
    return {
        "arms": {m: between_models(values(records, m, key), groups, margin, confidence) for m in arms},
        "primary": {
            "method": primary[0],
            "versus": primary[1],
            **(between_models(difference, groups, margin, confidence) or {}),
        },
    }


def unit_described(values: Mapping[int, float], groups: Mapping[int, Sequence[int]]) -> dict[str, Any]:
    """`stats.describe` over the stage-1 models' means of `values` (a per-stage-2-seed figure)."""
    means = [
        math.fsum(values[s] for s in seeds if s in values) / sum(s in values for s in seeds)
        for seeds in groups.values()
        if any(s in values for s in seeds)
    ]
    return stats.describe(means)


__all__ = [
    "between_models",
    "comparison",
    "stage1_groups",
    "stage1_seed_at",
    "tau",
    "unit_described",
    "unit_means",
    "values",
]
