"""A study's pre-registered analysis: one primary paired comparison, a Holm-corrected family of secondary
ones, an equivalence margin (TOST), the power of the planned seeds with its uncertainty, the reliance of
each EmoReg arm on its affective pathway, and the stage-1 checks that keep a degenerate control out of
every conclusion. Declared in the study config (`analysis:`) before the runs; the runner writes the plan
into the output folder when the matrix first starts, and the report says if it changed afterwards.

    analysis:
      primary: [emoreg_adaptive, emoreg_kmeans]   # method minus comparator, paired over seeds
      secondary: [[emoreg_adaptive, baseline], [positive_control, baseline], ...]
      positive_control: [positive_control, baseline]   # must be among the secondary comparisons
      equivalence_margin: 0.01                     # ±1 pp
      alpha: 0.05
      planned_seeds: 6                             # the power statement's n (default: the study's seeds)
      unit: stage1_model                           # replicates are stage-1 models (default: stage-2 seeds)

With `unit: stage1_model` (a study with `stage1_seeds`), every comparison is paired over stage-1 models: each
arm's accuracy is averaged over the stage-2 seeds that read one stage-1 seed (the comparator over the same
stage-2 seeds), and the between-stage-1 SD is estimated from the nested runs (`replicates`).

Within the secondary family both the difference p-values and the TOST p-values are Holm-adjusted: a
comparison reads "equivalent" only when its adjusted TOST p is below alpha.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .. import stats
from ..metrics import MECHANISM_NAMES
from ..run_record import utc_now
from . import replicates

PLAN_FILE = "analysis_plan.json"
PLAN_KEYS = (
    "primary",
    "secondary",
    "positive_control",
    "equivalence_margin",
    "alpha",
    "planned_seeds",
    "unit",
)
UNITS = ("seed", "stage1_model")


def check_analysis(analysis: Mapping[str, Any] | None, methods: Sequence[str]) -> dict | None:
    """The `analysis:` block of a study config, checked against its methods (None when there is none)."""
    if analysis is None:
        return None
    if not isinstance(analysis, Mapping):
        raise ValueError(f"analysis: expected a mapping with keys {list(PLAN_KEYS)}, got {analysis!r}")
    unknown = sorted(set(analysis) - set(PLAN_KEYS))
    if unknown:
        raise ValueError(f"analysis: unknown key(s) {unknown}; allowed: {list(PLAN_KEYS)}")
    if "primary" not in analysis:
        raise ValueError(
            "analysis: `primary: [method, comparator]` is required (the pre-registered comparison)"
        )

    def pair(value, where: str) -> list[str]:
        if not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] == value[1]:
            raise ValueError(
                f"analysis.{where}: expected [method, comparator] (two different methods), got {value!r}"
            )
        missing = [m for m in value if m not in methods]
        if missing:
            raise ValueError(f"analysis.{where}: {missing} not among the study's methods {list(methods)}")
        return [str(value[0]), str(value[1])]

    out = {
        "primary": pair(analysis["primary"], "primary"),
        "secondary": [pair(p, f"secondary[{i}]") for i, p in enumerate(analysis.get("secondary") or [])],
        "positive_control": None,
        "equivalence_margin": float(analysis.get("equivalence_margin", 0.01)),
        "alpha": float(analysis.get("alpha", 0.05)),
        "planned_seeds": analysis.get("planned_seeds"),
    }
    if "unit" in analysis:  # only when given: the plans registered before it keep their fingerprints
        if analysis["unit"] not in UNITS:
            raise ValueError(f"analysis.unit: one of {list(UNITS)}, got {analysis['unit']!r}")
        out["unit"] = str(analysis["unit"])
    planned = out["planned_seeds"]
    if planned is not None and (isinstance(planned, bool) or not isinstance(planned, int) or planned < 2):
        raise ValueError(f"analysis.planned_seeds: a number of seeds >= 2, got {planned!r}")
    if out["primary"] in out["secondary"]:
        raise ValueError("analysis: the primary comparison cannot also be a secondary one")
    if analysis.get("positive_control") is not None:
        out["positive_control"] = pair(analysis["positive_control"], "positive_control")
        if out["positive_control"] not in out["secondary"]:
            raise ValueError(
                "analysis.positive_control must be one of the secondary comparisons (it is Holm-corrected with them)"
            )
    if not 0 < out["equivalence_margin"] < 1:
        raise ValueError(
            f"analysis.equivalence_margin: a fraction of accuracy in (0, 1), got {out['equivalence_margin']}"
        )
    if not 0 < out["alpha"] < 0.5:
        raise ValueError(f"analysis.alpha must be in (0, 0.5), got {out['alpha']}")
    return out


def _fingerprint(plan: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]


def register_plan(output_dir: str | Path, analysis: Mapping[str, Any]) -> dict:
    """Write the analysis plan into the study folder the first time the matrix starts (before any run), and
    leave it alone afterwards: the report compares the config's plan with this record."""
    path = Path(output_dir) / PLAN_FILE
    if path.is_file():
        return json.loads(path.read_text())
    record = {
        "registered_at": utc_now(),  # UTC ISO, as the runs' starts: the report puts them side by side
        "plan": dict(analysis),
        "fingerprint": _fingerprint(analysis),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2))
    return record


def _comparison(records, pair: Sequence[str], split: str, margin: float, alpha: float, groups=None) -> dict:
    """`pair[0] - pair[1]` paired over seeds, or over stage-1 models when `groups` (`replicates.stage1_groups`)."""
    method, comparator = pair
    key = f"{split}_accuracy"
    if groups is not None:
        return replicates.comparison(records, pair, key, groups, margin, alpha)
    difference = stats.paired_difference(
        replicates.values(records, method, key), replicates.values(records, comparator, key), 1 - alpha
    )
    return {
        "method": method,
        "versus": comparator,
        **difference,
        "equivalence": stats.equivalence(difference, margin, alpha),
    }


def stage1_checks(stage1: Mapping[str, Mapping[int, Mapping]]) -> dict[str, dict]:
    """Per stage-1 variant: its accuracy on its own labels (test split, else validation), the majority-class
    rate, the k-means association with the emotions where relevant, and whether any seed is degenerate
    (`stats.degenerate`)."""
    out: dict[str, dict] = {}
    for variant, runs in stage1.items():
        seeds: dict[str, dict] = {}
        for seed, results in runs.items():
            prefix = "test" if results.get("test_accuracy") is not None else "eval"
            accuracy, majority = results.get(f"{prefix}_accuracy"), results.get(f"{prefix}_majority_accuracy")
            modal = results.get(f"{prefix}_modal_prediction_share")
            seeds[str(seed)] = {
                "split": prefix,
                "accuracy": accuracy,
                "majority_accuracy": majority,
                "modal_prediction_share": modal,
                "degenerate": None
                if accuracy is None or majority is None
                else stats.degenerate(accuracy, majority, modal),
            }
        accuracies = [s["accuracy"] for s in seeds.values() if s["accuracy"] is not None]
        majorities = [s["majority_accuracy"] for s in seeds.values() if s["majority_accuracy"] is not None]
        association = {
            key: stats.describe(
                [
                    float(r[f"kmeans_emotion_{key}"])
                    for r in runs.values()
                    if r.get(f"kmeans_emotion_{key}") is not None
                ]
            )
            for key in ("cramers_v", "mutual_information", "information_share")
        }
        out[variant] = {
            "seeds": seeds,
            "accuracy": stats.describe(accuracies),
            "majority_accuracy": stats.describe(majorities),
            "degenerate": any(s["degenerate"] for s in seeds.values()),
            "kmeans_association": association if association["cramers_v"]["n"] else None,
        }
    return out


def reliance(records: Mapping[str, Mapping[int, Mapping]], split: str, groups=None) -> dict[str, dict]:
    """Per EmoReg arm: the accuracy drop with h_A and e(x) permuted across images and replaced by their mean;
    where the records have them, the mechanism figures too (`metrics.MECHANISM_NAMES`: h_A or e(x) alone
    changed, z_N and z_E alone), left out for records evaluated before them. Described over seeds, or over
    stage-1 models (each the mean of its stage-2 seeds) when `groups` is given."""

    def described(values: dict) -> dict:
        return (
            stats.describe(list(values.values()))
            if groups is None
            else replicates.unit_described(values, groups)
        )

    out = {}
    for method in records:
        permuted = replicates.values(records, method, f"{split}_reliance_permuted")
        if permuted:
            out[method] = {
                "permuted": described(permuted),
                "mean": described(replicates.values(records, method, f"{split}_reliance_mean")),
            }
            for key in MECHANISM_NAMES:
                if values := replicates.values(records, method, f"{split}_{key}"):
                    out[method][key] = described(values)
    return out


def analyse(
    records: Mapping[str, Mapping[int, Mapping]],
    plan: Mapping[str, Any],
    *,
    split: str,
    planned_seeds: int,
    stage1: Mapping[str, Mapping[int, Mapping]],
    stage1_of: Mapping[str, str | None],
    registered: Mapping[str, Any] | None = None,
    groups: Mapping[int, Sequence[int]] | None = None,
    scope: Mapping[str, Any] | None = None,
) -> dict:
    """The plan carried out: primary (with equivalence, power and a decision), secondary (Holm-adjusted, the
    difference and the TOST p-values each as one family), positive control, stage-1 checks, reliance, and
    which comparisons rest on a degenerate stage 1; with `unit: stage1_model`, everything over stage-1 models
    and tau (`replicates.tau`). `records`: `{method: {seed: all_results}}`; `stage1`: `{variant: {seed:
    all_results}}`; `stage1_of`: the stage-1 variant each method reads (None for none); `groups`: `{stage-1
    seed: [stage-2 seeds reading it]}` (`replicates.stage1_groups`, needed by the stage-1-model unit);
    `scope`: what a conclusion holds for (stage-1 models per arm, stage-2 seeds, epochs), kept as given."""
    margin, alpha = plan["equivalence_margin"], plan["alpha"]
    checks = stage1_checks(stage1)
    nested = plan.get("unit") == "stage1_model"
    if nested and not groups:
        raise ValueError(
            "analysis.unit: stage1_model needs the stage-1 seed each stage-2 seed reads (`groups`)"
        )
    groups = groups if nested else None

    def degenerate_parts(pair: Sequence[str]) -> list[dict]:
        """The methods of `pair` whose stage 1 is degenerate, with that stage 1."""
        return [
            {"method": m, "stage1": stage1_of[m]}
            for m in pair
            if stage1_of.get(m) and checks.get(stage1_of[m], {}).get("degenerate")
        ]

    primary = _comparison(records, plan["primary"], split, margin, alpha, groups)
    primary["degenerate"] = degenerate_parts(plan["primary"])
    primary["decision"] = stats.decide(primary, primary["equivalence"]["equivalent"], alpha=alpha)
    planned_seeds = plan.get("planned_seeds") or planned_seeds
    if primary.get("std"):
        primary["power"] = stats.planned_power(primary["std"], primary["n"], planned_seeds, margin, 1 - alpha)

    secondary = [_comparison(records, pair, split, margin, alpha, groups) for pair in plan["secondary"]]
    adjusted = stats.holm({i: c["p_value"] for i, c in enumerate(secondary)})
    tost = stats.holm({i: c["equivalence"]["p_value"] for i, c in enumerate(secondary)})
    for i, comparison in enumerate(secondary):
        comparison["p_holm"] = adjusted[i]
        equivalence = comparison["equivalence"]
        equivalence["p_holm"] = tost[i]
        equivalence["equivalent_holm"] = None if tost[i] is None else tost[i] < alpha
        comparison["degenerate"] = degenerate_parts([comparison["method"], comparison["versus"]])
        comparison["decision"] = stats.decide(comparison, equivalence["equivalent_holm"], adjusted[i], alpha)

    positive = None
    if plan.get("positive_control"):
        found = next(c for c in secondary if [c["method"], c["versus"]] == list(plan["positive_control"]))
        detected = found["decision"] == "different" and (found["mean"] or 0) > 0
        positive = {"method": found["method"], "versus": found["versus"], "detected": detected}

    changed = None
    if registered is not None:
        changed = registered.get("fingerprint") != _fingerprint(plan)
    return {
        "plan": dict(plan),
        "registered_at": (registered or {}).get("registered_at"),
        "changed_after_registration": changed,
        "planned_seeds": planned_seeds,
        "primary": primary,
        "secondary": secondary,
        "positive_control": positive,
        "stage1": checks,
        "reliance": reliance(records, split, groups),
        **({"scope": dict(scope)} if scope else {}),
        **(
            {
                "tau": replicates.tau(
                    records,
                    plan["primary"],
                    [m for m in records if stage1_of.get(m)],
                    f"{split}_accuracy",
                    groups,
                    margin,
                )
            }
            if nested
            else {}
        ),
    }


__all__ = [
    "PLAN_FILE",
    "analyse",
    "check_analysis",
    "register_plan",
    "stage1_checks",
]
