"""A card's numbers: statistics over seeds, the `model-index` entries, the results and regulation tables,
and the Controls table, whose verdicts come from `emoreg_hf.stats` like the ablation report's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from huggingface_hub import EvalResult

from .. import registry, stage1_variants, stats
from ..metrics import MECHANISM_ACCURACIES, MECHANISM_DROPS, METRIC_NAMES
from .runs import RunFolder

SPLITS = {"eval": "validation", "test": "test"}  # all_results.json prefix -> split name in the card
METRIC_TITLES = {
    "accuracy": "Accuracy",
    "top5_accuracy": "Top-5 accuracy",
    "macro_f1": "Macro-F1",
    "balanced_accuracy": "Balanced accuracy",
    "ece": "ECE (15 bins)",
}
# Top-k accuracy says nothing when k covers (almost) every class: top-5 of 3 emotions is always 1.0.
TOPK_MIN_CLASSES = {"top5_accuracy": 6}
Statistics = dict[str, dict[str, Any]]  # result key -> stats.describe(...) over seeds


def seed_statistics(runs: list[RunFolder]) -> Statistics:
    """`stats.describe` over the runs of every numeric result they all have."""
    first = runs[0].results
    keys = [k for k, v in first.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for key in keys:
        values = [r.results.get(key) for r in runs]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            out[key] = stats.describe(values)
    return out


def fmt(stat: dict[str, Any] | None, digits: int = 4) -> str:
    """`mean ± std` over several seeds, the value alone for one, `–` when absent."""
    if not stat or stat.get("mean") is None:
        return "–"
    mean = f"{stat['mean']:.{digits}f}"
    return f"{mean} ± {stat['std']:.{digits}f}" if stat.get("std") is not None else mean


def reported_metrics(run: RunFolder) -> list[str]:
    """The metrics a card reports: all but top-k accuracies that are trivially 1 for few classes."""
    n = len(run.record.label_names)
    return [m for m in METRIC_NAMES if n >= TOPK_MIN_CLASSES.get(m, 0)]


def eval_results(runs: list[RunFolder], dataset: dict[str, str]) -> list[EvalResult]:
    """One EvalResult per reported split x metric; the value is the run's (or the seeds' mean) result."""
    statistics = seed_statistics(runs)
    n = len(runs)
    results = []
    for prefix, split in SPLITS.items():
        for metric in reported_metrics(runs[0]):
            stat = statistics.get(f"{prefix}_{metric}")
            if stat is None:
                continue
            results.append(
                EvalResult(
                    task_type="image-classification",
                    task_name="Image Classification",
                    dataset_type=dataset["id"],
                    dataset_name=dataset["name"],
                    dataset_split=split,
                    metric_type=metric,
                    metric_name=f"{METRIC_TITLES[metric]} ({split})"
                    + (f", mean of {n} seeds" if n > 1 else ""),
                    metric_value=stat["mean"],
                )
            )
    return results


# Evaluations beside the plain one, each under `<split>_<variant>_*` (training.averaged_results): test-time
# augmentation and the EMA of the weights. A card shows each as its own row under its split's plain row.
VARIANTS = ("tta", "ema")


def averaging(config: dict[str, Any]) -> dict[str, Any]:
    """The run's test-time augmentation and weight EMA (its recipe arguments), for the words under the rows
    they add; older records have neither."""
    tta = config.get("tta") or "none"
    return {
        "tta": None if tta == "none" else tta,
        "ema_decay": config.get("ema_decay"),
        "ema_warmup": bool(config.get("ema_warmup")),
        "ema_saved": config.get("ema_save") == "ema",
    }


def results_table(statistics: Statistics, metrics: Sequence[str]) -> dict[str, Any]:
    """Columns: the metrics (and the loss) the plain results have; rows: each split, then its variants."""
    metrics = [m for m in (*metrics, "loss") if any(f"{p}_{m}" in statistics for p in SPLITS)]
    rows = []
    for prefix, split in SPLITS.items():
        for variant in (None, *VARIANTS):
            key = f"{prefix}_{variant}" if variant else prefix
            if any(f"{key}_{m}" in statistics for m in metrics):
                values = [fmt(statistics.get(f"{key}_{m}")) for m in metrics]
                rows.append({"split": split, "variant": variant, "values": values})
    return {"columns": [METRIC_TITLES.get(m, "Loss") for m in metrics], "rows": rows}


# Mean ρ below the first bound: the checkpoint weighs its non-emotional response almost alone; above the
# second: mostly the emotional one (which also reads h_T; how much the affective pathway is used is the
# reliance, not ρ).
RELIANCE = (0.1, 0.9)


def _points(stat: dict | None) -> dict | None:
    """A statistic of a fraction, in percentage points."""
    if not stat:
        return stat
    return {
        k: (100 * v if isinstance(v, float) and k in ("mean", "std", "ci_low", "ci_high", "sem") else v)
        for k, v in stat.items()
    }


def mechanism_rows(statistics: Statistics) -> list[dict[str, Any]]:
    """Per split that has them, the mechanism figures as table cells; none for older records."""
    rows = []
    for prefix, split in SPLITS.items():
        if not any(f"{prefix}_{key}" in statistics for key in (*MECHANISM_DROPS, *MECHANISM_ACCURACIES)):
            continue
        row = {key: fmt(_points(statistics.get(f"{prefix}_{key}")), 2) for key in MECHANISM_DROPS}
        row |= {key: fmt(statistics.get(f"{prefix}_{key}")) for key in MECHANISM_ACCURACIES}
        rows.append({"split": split, **row})
    return rows


def regulation_tables(statistics: Statistics) -> dict[str, Any] | None:
    """ρ and emotion statistics per split, as tables, from the `<split>_rho_*` / `emotion_*` results, and
    the mechanism (`mechanism_rows`) where the results have it."""
    summary, per_class, shares = [], {}, {}
    for prefix, split in SPLITS.items():
        if f"{prefix}_rho_mean" not in statistics:
            continue
        summary.append(
            {
                "split": split,
                "rho_mean": fmt(statistics.get(f"{prefix}_rho_mean")),
                "rho_std": fmt(statistics.get(f"{prefix}_rho_std")),
                "emotion_entropy": fmt(statistics.get(f"{prefix}_emotion_entropy")),
                "reliance_permuted": fmt(_points(statistics.get(f"{prefix}_reliance_permuted")), 2),
                "reliance_mean": fmt(_points(statistics.get(f"{prefix}_reliance_mean")), 2),
            }
        )
        for key, stat in statistics.items():
            if key.startswith(f"{prefix}_rho_class/"):
                per_class.setdefault(key.split("/", 1)[1], {})[split] = fmt(stat, 3)
            elif key.startswith(f"{prefix}_emotion_share/"):
                shares.setdefault(key.split("/", 1)[1], {})[split] = fmt(stat, 3)
    if not summary:
        return None
    splits = [row["split"] for row in summary]
    last = "test" if "test" in splits else splits[-1]
    rho = statistics[f"{'test' if last == 'test' else 'eval'}_rho_mean"]["mean"]
    prefix = "test" if last == "test" else "eval"
    relies = "task" if rho < RELIANCE[0] else ("emotional" if rho > RELIANCE[1] else None)
    permuted = (statistics.get(f"{prefix}_reliance_permuted") or {}).get("mean")
    replaced = (statistics.get(f"{prefix}_reliance_mean") or {}).get("mean")
    return {
        "splits": splits,
        "reading": {
            "split": last,
            "rho": rho,
            "relies_on": relies,
            "reliance_permuted": permuted,
            "reliance_mean": replaced,
        },
        "summary": summary,
        "mechanism": mechanism_rows(statistics),
        "per_class": [{"name": k, "values": [v.get(s, "–") for s in splits]} for k, v in per_class.items()],
        "emotion_share": [{"name": k, "values": [v.get(s, "–") for s in splits]} for k, v in shares.items()],
    }


def configuration_label(run: RunFolder) -> str:
    label = run.method or run.stage
    method = registry.method(run.method)
    if method is not None and method.regulated:
        settings = run.record.emoreg or {}
        label += f" ({settings.get('regulation', '?')}, {settings.get('influence', '?')})"
    controls = [k for k, v in run.record.controls.items() if v]
    return label + "".join(f", {c}" for c in controls)


def by_seed(runs: Sequence[RunFolder], key: str) -> dict[int, float]:
    return {
        r.record.seed: float(r.results[key]) for r in runs if isinstance(r.results.get(key), (int, float))
    }


def comparisons(runs: list[RunFolder], others: Sequence[RunFolder]) -> dict[str, Any] | None:
    """This checkpoint's configuration next to other configurations (baseline, controls): the paired
    difference over the seeds both ran, its verdict and the verdict's words (`stats.difference_words`)."""
    if not others:
        return None
    for other in others:
        if other.stage != runs[0].stage or other.record.label_names != runs[0].record.label_names:
            raise ValueError(
                f"{other.path} is a {other.stage} run on other classes than {runs[0].path}: a comparison "
                "needs runs of the same stage on the same data set."
            )
    prefix = runs[0].record.evaluated_split
    key = f"{prefix}_accuracy"
    this = by_seed(runs, key)
    groups: dict[str, list[RunFolder]] = {}
    for run in others:
        groups.setdefault(configuration_label(run), []).append(run)
    rows = [
        {
            "label": configuration_label(runs[0]),
            "this": True,
            "n": len(runs),
            "accuracy": fmt(stats.describe(list(this.values()))),
        }
    ]
    for label, group in groups.items():
        other = by_seed(group, key)
        difference = stats.paired_difference(this, other)
        rows.append(
            {
                "label": label,
                "n": len(group),
                "accuracy": fmt(stats.describe(list(other.values()))),
                "difference": {**difference, "words": stats.difference_words(difference)},
                "verdict": difference["verdict"],
                "command": group[0].reproduce_command,
            }
        )
    missing = [  # what a card of this method should be compared with, and is not (nor is itself)
        kind.label
        for kind in registry.expected_comparisons(runs[0].method)
        if not any(kind.matches(r.method, r.record.controls) for r in [runs[0], *others])
    ]
    # The controls that learn labels without emotion on the same images (k-means): without one, no gain is emotion's.
    decisive = {
        c.label
        for c in registry.CONTROLS.values()
        if c.attributes_emotion and c.stage1 and not stage1_variants.STAGE1_VARIANTS[c.stage1].emotion_labels
    }
    return {
        "split": SPLITS[prefix],
        "rows": rows,
        "missing": missing,
        "missing_decisive": [label for label in missing if label in decisive],
    }
