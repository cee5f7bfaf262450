"""The matrix's report: statistics per method over seeds (`emoreg_hf.stats`), paired differences to the
baseline and to each method's control, the smallest difference the design can detect, and
`results.md` (from a shipped template), `results.json` and `results.png`."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jinja2

from .. import registry, stats
from ..metrics import METRIC_NAMES
from ..publish.scrub import placeholder_paths
from ..run_record import RECORD_FILE, RunRecord, load_run_record
from ..templates import read_template
from .config import AblationConfig


def collect_records(
    output_dir: str | Path,
    methods: Sequence[str],
    seeds: Sequence[int],
    stage1_seeds: Sequence[int] | None = None,
) -> dict:
    """`{"finetune": {method: {seed: RunRecord}}, "pretrain": {variant: {seed: RunRecord}}}` of finished runs
    (stage 1 over `stage1_seeds` when it was trained for fewer seeds)."""
    root = Path(output_dir)
    found: dict[str, dict[str, dict[int, RunRecord]]] = {"finetune": {}, "pretrain": {}}
    for stage, names, stage_seeds in (
        ("finetune", methods, seeds),
        ("pretrain", list(registry.STAGE1_VARIANTS), seeds if stage1_seeds is None else stage1_seeds),
    ):
        for name in names:
            for seed in stage_seeds:
                folder = root / stage / name / f"seed{seed}"
                if (folder / RECORD_FILE).is_file():
                    found[stage].setdefault(name, {})[seed] = load_run_record(folder)
    return found


def summarize(
    records: dict[str, dict[int, dict]],
    *,
    baseline: str = registry.REFERENCE_ARM,
    pairs: Sequence[tuple[str, str]] | None = None,
    split: str | None = None,
    confidence: float = stats.CONFIDENCE,
) -> dict:
    """Statistics per method over seeds, paired differences to `baseline` (with the smallest difference
    the design detects at 80% power), and each (method, control) pair of `pairs` that ran (by default
    every control of the registry with the arm it pairs with).

    `records`: `{method: {seed: all_results}}`. `split`: `test` (default when present) or `eval`.
    """
    if split is None:
        has_test = any("test_accuracy" in r for runs in records.values() for r in runs.values())
        split = "test" if has_test else "eval"

    def series(method: str, key: str) -> dict[int, float]:
        return {
            s: float(r[key])
            for s, r in records.get(method, {}).items()
            if r.get(key) is not None and math.isfinite(float(r[key]))
        }

    def described(method: str, key: str) -> dict | None:
        values = series(method, key)
        return stats.describe(list(values.values()), confidence) if values else None

    pairs = registry.control_pairs() if pairs is None else pairs
    methods: dict[str, Any] = {}
    for method, runs in records.items():
        if not runs:
            continue
        entry: dict[str, Any] = {
            "description": registry.MATRIX[method].description if method in registry.MATRIX else method,
            "seeds": sorted(runs),
            "n": len(runs),
            "metrics": {},
        }
        for metric in METRIC_NAMES:
            values = series(method, f"{split}_{metric}")
            if values:
                entry["metrics"][metric] = stats.describe(list(values.values()), confidence)
                entry["metrics"][metric]["values"] = {str(s): v for s, v in sorted(values.items())}
        entry["validation_accuracy"] = described(method, "eval_accuracy")
        entry["rho_mean"] = described(method, f"{split}_rho_mean")
        entry["reliance_permuted"] = described(method, f"{split}_reliance_permuted")
        entry["reliance_mean"] = described(method, f"{split}_reliance_mean")
        entry["train_runtime"] = described(method, "train_runtime")
        entry["train_samples_per_second"] = described(method, "train_samples_per_second")
        if method != baseline and baseline in records:
            difference = stats.paired_difference(
                series(method, f"{split}_accuracy"), series(baseline, f"{split}_accuracy"), confidence
            )
            if difference["std"]:
                difference["detectable_at_80_power"] = stats.minimum_detectable_difference(
                    difference["std"], difference["n"], confidence=confidence
                )
            entry["vs_baseline"] = difference
        methods[method] = entry
    comparisons = []
    for reference, control in pairs:
        if reference in records and control in records:
            difference = stats.paired_difference(
                series(reference, f"{split}_accuracy"), series(control, f"{split}_accuracy"), confidence
            )
            comparisons.append({"method": reference, "versus": control, **difference})
    return {
        "split": split,
        "confidence": confidence,
        "baseline": baseline if baseline in records else None,
        "methods": methods,
        "comparisons": comparisons,
    }


def _pct(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.{digits}f}" if sign else f"{100 * value:.{digits}f}"


def _mean_std(stat: dict | None, scale: float = 100.0, digits: int = 2) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    mean = f"{scale * stat['mean']:.{digits}f}"
    return mean if stat.get("std") is None else f"{mean} ± {scale * stat['std']:.{digits}f}"


def _interval(stat: dict | None, scale: float = 100.0, sign: bool = False) -> str:
    if not stat or stat.get("ci_low") is None:
        return "–"
    fmt = "{:+.2f}" if sign else "{:.2f}"
    return f"[{fmt.format(scale * stat['ci_low'])}, {fmt.format(scale * stat['ci_high'])}]"


def _sentence(name: str, other: str, difference: dict, level: int) -> str:
    diff = f"{_pct(difference['mean'], sign=True)} pp"
    n = difference["n"]
    words = stats.difference_words(difference)
    if difference["verdict"] == "unknown":
        return f"**{name}** vs {other}: {diff} over {n} seed(s); {words}."
    reason = "the interval contains 0" if difference["verdict"] == "noise" else "the interval excludes 0"
    return (
        f"**{name}** vs {other}: {diff}, {level}% CI {_interval(difference, sign=True)} pp over {n} paired "
        f"seeds: **{words}** ({reason})."
    )


def _conclusion(comparison: dict, degenerate: Sequence[str] = ()) -> dict | None:
    """What the report concludes from a method against its control, as values for the template's
    conclusion block of that control (`registry.Control.conclusion`); None when the control draws none,
    and the `degenerate` block (no conclusion) when either side reads a degenerate stage 1."""
    control = registry.CONTROLS.get(comparison["versus"])
    if control is None or control.conclusion is None:
        return None
    arm = registry.MATRIX.get(comparison["method"])
    stuck = {comparison["method"], comparison["versus"]} & set(degenerate)
    return {
        "kind": "degenerate" if stuck else control.conclusion,
        "method": comparison["method"],
        "control": comparison["versus"],
        "verdict": comparison["verdict"],
        "two_pathways": arm is not None and arm.method.regulated,  # the second pathway is another cause
    }


DEGENERATE_NOTE = " (A degenerate stage 1 is involved: its pathway is constant; not used to conclude.)"


def _reliance_lines(summary: dict) -> list[str]:
    """Per EmoReg method, the accuracy its answers lose without each image's own h_A and e(x)."""
    lines = []
    for method, entry in summary["methods"].items():
        permuted, mean = entry.get("reliance_permuted"), entry.get("reliance_mean")
        if permuted:
            lines.append(
                f"{method}: {_mean_std(permuted)} pp with h_A and e(x) permuted across images, "
                f"{_mean_std(mean)} pp with them replaced by their mean"
            )
    return lines


def _analysis_context(result: dict | None) -> dict | None:
    if not result:
        return None
    from . import analysis

    return {
        "registered_at": result.get("registered_at"),
        "changed": result.get("changed_after_registration"),
        "primary": analysis.comparison_sentence(result["primary"]),
        "conclusion": analysis.primary_conclusion(result),
        "power": analysis.power_sentence(result),
        "secondary": [analysis.comparison_sentence(c, holm=True) for c in result["secondary"]],
        "positive_control": analysis.positive_control_sentence(result),
        "stage1": analysis.stage1_lines(result),
        "margin": f"{100 * result['plan']['equivalence_margin']:.2f}",
    }


def _power_statement(summary: dict) -> str | None:
    """The smallest difference to the baseline each method's design detects at 80% power."""
    parts = [
        f"{method} {100 * entry['vs_baseline']['detectable_at_80_power']:.2f} pp"
        for method, entry in summary["methods"].items()
        if (entry.get("vs_baseline") or {}).get("detectable_at_80_power") is not None
    ]
    if not parts:
        return None
    return (
        "Smallest true difference to the baseline that a paired t-test over these seeds would detect with 80% "
        f"power at the {int(round(100 * summary['confidence']))}% level, from the measured spread of each "
        "method's paired differences: " + "; ".join(parts) + ". Smaller effects may exist and go unseen."
    )


def render_markdown(
    summary: dict,
    *,
    title: str | None = None,
    stage1: list[str] | None = None,
    data_sizes: str | None = None,
    notes: str = "",
    degenerate: Sequence[str] = (),
) -> str:
    """The results table, the differences in words, the EmoReg-vs-controls verdicts, the power statement,
    the reliance on the affective pathway, and (with `summary["analysis"]`) the pre-registered analysis.
    `degenerate`: methods whose stage 1 is degenerate (`analysis.stage1_checks`); no conclusion rests on them."""
    level = int(round(100 * summary["confidence"]))
    rows = []
    for method, entry in summary["methods"].items():
        metrics, diff = entry["metrics"], entry.get("vs_baseline")
        rho, runtime, speed = (
            entry.get("rho_mean"),
            entry.get("train_runtime"),
            entry.get("train_samples_per_second"),
        )
        rows.append(
            [
                method,
                str(entry["n"]),
                _mean_std(metrics.get("accuracy")),
                _interval(metrics.get("accuracy")),
                "–" if diff is None else f"{_pct(diff['mean'], sign=True)} {_interval(diff, sign=True)}",
                _mean_std(metrics.get("top5_accuracy")),
                _mean_std(metrics.get("macro_f1")),
                _mean_std(metrics.get("balanced_accuracy")),
                _mean_std(metrics.get("ece"), scale=1.0, digits=3),
                "–" if not rho else f"{rho['mean']:.3f}",
                "–" if not runtime else f"{runtime['mean']:.0f}",
                "–" if not speed else f"{speed['mean']:.0f}",
            ]
        )
    n_seeds = {entry["n"] for entry in summary["methods"].values()}
    few_seeds = None
    if n_seeds and min(n_seeds) <= 3:
        df = max(1, min(n_seeds) - 1)
        few_seeds = (
            f"With {min(n_seeds)} seeds the interval uses {df} degree(s) of freedom "
            f"(t = {stats.t_quantile(0.975, df):.2f}), so only large effects can be told from noise."
        )
    tested = sum(1 for e in summary["methods"].values() if e.get("vs_baseline")) + len(summary["comparisons"])
    multiplicity = None
    if tested > 1 and summary.get("analysis"):
        multiplicity = (
            f"The {tested} intervals in the list above are not corrected for multiple comparisons; the "
            "pre-registered analysis is: one primary comparison, and its secondary family corrected with Holm."
        )
    elif tested > 1:
        chance = 1 - summary["confidence"] ** tested
        multiplicity = (
            f"No correction for multiple comparisons: with {tested} intervals at {level}%, the chance that at "
            f"least one excludes 0 by luck alone is about {100 * chance:.0f}% (if they were independent), so a "
            "single isolated 'beyond noise' is weak evidence."
        )
    context = {
        "title": title,
        "split_name": "test" if summary["split"] == "test" else "validation",
        "level": level,
        "rows": rows,
        "data_sizes": data_sizes,
        "stage1": stage1,
        "stage1_seeds": summary.get("stage1_seeds"),
        "vs_baseline": [
            _sentence(method, summary["baseline"], entry["vs_baseline"], level)
            + (DEGENERATE_NOTE if method in degenerate else "")
            for method, entry in summary["methods"].items()
            if entry.get("vs_baseline") is not None
        ],
        "comparisons": [
            _sentence(c["method"], c["versus"], c, level)
            + (DEGENERATE_NOTE if {c["method"], c["versus"]} & set(degenerate) else "")
            for c in summary["comparisons"]
        ],
        "conclusions": [
            c for c in (_conclusion(c, degenerate) for c in summary["comparisons"]) if c is not None
        ],
        "reliance": _reliance_lines(summary),
        "analysis": _analysis_context(summary.get("analysis")),
        "power": _power_statement(summary),
        "few_seeds": few_seeds,
        "multiplicity": multiplicity,
        "notes": notes.strip(),
    }
    template = jinja2.Environment(keep_trailing_newline=True).from_string(
        read_template("ablation_results.md")
    )
    return template.render(**context)


def plot_results(summary: dict, path: str | Path) -> Path:
    """One bar chart: mean top-1 per method with its interval; the baseline mean as a line; controls in red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["methods"])
    described = [summary["methods"][m]["metrics"].get("accuracy", {}) for m in names]
    means = [100 * (s.get("mean") or 0.0) for s in described]
    errors = [
        [100 * (s["mean"] - s["ci_low"]) if s.get("ci_low") is not None else 0.0 for s in described],
        [100 * (s["ci_high"] - s["mean"]) if s.get("ci_high") is not None else 0.0 for s in described],
    ]
    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * len(names) + 1), 3.8), dpi=120)
    colors = [
        "#888888" if m == summary.get("baseline") else ("#c44e52" if m in registry.CONTROLS else "#4c72b0")
        for m in names
    ]
    ax.bar(range(len(names)), means, yerr=errors, capsize=4, color=colors)
    baseline = summary.get("baseline")
    if baseline and summary["methods"][baseline]["metrics"].get("accuracy"):
        ax.axhline(
            100 * summary["methods"][baseline]["metrics"]["accuracy"]["mean"], color="#444444", ls="--", lw=1
        )
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    split_name = "test" if summary["split"] == "test" else "validation"
    ax.set_ylabel(f"{split_name} top-1 accuracy (%)")
    ax.set_title(
        f"mean over seeds, {int(round(100 * summary['confidence']))}% Student-t interval; grey: baseline, red: controls"
    )
    low = min((m - e for m, e in zip(means, errors[0])), default=0.0)
    ax.set_ylim(bottom=max(0.0, low - 5.0))
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def _images(record: RunRecord) -> dict[str, int]:
    """Images per split a run used (summed over its data sets)."""
    sizes: dict[str, int] = {}
    for dataset in record.datasets:
        for split, n in dataset.split_sizes.items():
            sizes[split] = sizes.get(split, 0) + int(n)
    return sizes


def _stage1_lines(stage1: dict[str, dict[int, RunRecord]], checks: dict | None = None) -> list[str]:
    lines = []
    for variant, runs in stage1.items():
        check = (checks or {}).get(variant) or {}
        results = [r.results for r in runs.values()]
        runtime = stats.describe([r["train_runtime"] for r in results if "train_runtime" in r])
        accuracy = stats.describe([r["eval_accuracy"] for r in results if "eval_accuracy" in r])
        what = (
            "emotion validation accuracy"
            if variant in ("normal", "shuffled")
            else "validation accuracy on its own labels"
        )
        line = f"{variant}: {len(runs)} run(s), {what} {_mean_std(accuracy)} %"
        test = stats.describe([r["test_accuracy"] for r in results if "test_accuracy" in r])
        if test["n"]:
            line += f", test accuracy {_mean_std(test)} %"
        majority = (check.get("majority_accuracy") or {}).get("mean")
        if majority is not None:
            line += f" (majority-class rate {100 * majority:.2f} %)"
        if check.get("degenerate"):
            line += ", **degenerate**: never used to conclude"
        lines.append(line + f", {(runtime['mean'] or 0):.0f} s each")
    return lines


def _sizes_sentence(collected: dict) -> str | None:
    def describe_stage(records: dict[str, dict[int, RunRecord]]) -> str | None:
        sizes = {json.dumps(_images(r), sort_keys=True) for runs in records.values() for r in runs.values()}
        if len(sizes) != 1:
            return None if not sizes else "varies per run (see results.json)"
        return ", ".join(f"{split} {n:,}" for split, n in json.loads(sizes.pop()).items())

    parts = []
    for stage, label in (("pretrain", "stage 1"), ("finetune", "stage 2")):
        text = describe_stage(collected[stage])
        if text:
            parts.append(f"{label}: {text}")
    return "; ".join(parts) or None


def write_report(
    config: AblationConfig, *, command: str = "", log: Callable[[str], None] | None = None
) -> dict:
    """Write `results.json`, `results.md` and `results.png` into the matrix's output folder."""
    root = Path(config.output_dir)
    collected = collect_records(root, config.methods, config.seeds, config.stage1_seeds)
    finetune = {m: collected["finetune"][m] for m in config.methods if m in collected["finetune"]}
    summary = summarize({m: {s: r.results for s, r in runs.items()} for m, runs in finetune.items()})
    summary["seeds"] = config.seeds
    summary["stage1_seeds"] = config.stage1_seeds
    summary["images"] = {
        stage: {
            name: {str(s): _images(r) for s, r in runs.items()} for name, runs in collected[stage].items()
        }
        for stage in ("pretrain", "finetune")
    }
    summary["stage1"] = {
        variant: {
            str(s): {k: r.results.get(k) for k in ("eval_accuracy", "test_accuracy", "train_runtime")}
            for s, r in runs.items()
        }
        for variant, runs in collected["pretrain"].items()
    }
    from . import analysis

    stage1_results = {v: {s: r.results for s, r in runs.items()} for v, runs in collected["pretrain"].items()}
    checks = analysis.stage1_checks(stage1_results)
    stage1_of = {m: registry.MATRIX[m].stage1 for m in config.methods}
    degenerate = [
        m for m, variant in stage1_of.items() if variant and checks.get(variant, {}).get("degenerate")
    ]
    summary["stage1_checks"] = checks
    if config.analysis is not None:
        plan_file = root / analysis.PLAN_FILE
        summary["analysis"] = analysis.analyse(
            {m: {s: r.results for s, r in runs.items()} for m, runs in finetune.items()},
            config.analysis,
            split=summary["split"],
            planned_seeds=len(config.seeds),
            stage1=stage1_results,
            stage1_of=stage1_of,
            registered=json.loads(plan_file.read_text()) if plan_file.is_file() else None,
        )
    sources = config.pretrain.get("affective_sources")
    data = (
        f"Data: stage 1 `{json.dumps(sources)}` (taxonomy `{config.pretrain.get('taxonomy')}`); "
        f"stage 2 `{json.dumps(config.finetune.get('dataset'))}`."
    )
    # results.md is published (benchmarks/results, a model card): no absolute path of this machine in it
    data, command = placeholder_paths(data), placeholder_paths(command)
    notes = "\n\n".join(part for part in (config.notes.strip(), data, command) if part)
    markdown = render_markdown(
        summary,
        title=config.title,
        stage1=_stage1_lines(collected["pretrain"], checks),
        data_sizes=_sizes_sentence(collected),
        notes=notes,
        degenerate=degenerate,
    )
    (root / "results.json").write_text(json.dumps(summary, indent=2))
    (root / "results.md").write_text(markdown)
    if summary["methods"]:
        plot_results(summary, root / "results.png")
    if log:
        log(f"results: {root / 'results.md'}, {root / 'results.json'}, {root / 'results.png'}")
    return summary
