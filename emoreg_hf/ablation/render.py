"""`results.md` and `results.png` from `results.json`'s summary: every sentence of `results.md` is in the
shipped template `model_cards/ablation_results.md`, fed values only; `results.png` is one bar chart."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2

from .. import registry, stage1_variants, stats
from ..metrics import MECHANISM_NAMES
from ..templates import read_template
from .render_analysis import analysis_context, nested_stage1
from .render_analysis import pct as _pct


def _mean_std(stat: dict | None, scale: float = 100.0, digits: int = 2) -> str:
    if not stat or stat.get("mean") is None:
        return "–"
    mean = f"{scale * stat['mean']:.{digits}f}"
    return mean if stat.get("std") is None else f"{mean} ± {scale * stat['std']:.{digits}f}"


def _mechanism(entry: dict) -> dict[str, str] | None:
    """A method's drops with h_A or e(x) alone changed and the accuracy of z_N and z_E alone (percent),
    mean ± std over seeds; None for records evaluated before these figures existed."""
    if not any(entry.get(key) for key in MECHANISM_NAMES):
        return None
    return {key: _mean_std(entry.get(key)) for key in MECHANISM_NAMES}


def _reliance_entries(summary: dict) -> dict[str, dict]:
    """Per method, its reliance figures as the report shows them: over stage-2 seeds (`summary["methods"]`),
    or, when the stage-1 model is the unit, over stage-1 models (the pre-registered analysis's `reliance`)."""
    reliance = (summary.get("analysis") or {}).get("reliance")
    if not (nested_stage1(summary) or {}).get("unit") or not reliance:
        return summary["methods"]
    return {
        method: {
            "reliance_permuted": r["permuted"],
            "reliance_mean": r["mean"],
            **{key: r[key] for key in MECHANISM_NAMES if key in r},
        }
        for method, r in reliance.items()
    }


def _interval(stat: dict | None, scale: float = 100.0, sign: bool = False) -> str:
    if not stat or stat.get("ci_low") is None:
        return "–"
    fmt = "{:+.2f}" if sign else "{:.2f}"
    return f"[{fmt.format(scale * stat['ci_low'])}, {fmt.format(scale * stat['ci_high'])}]"


def _difference(method: str, versus: str, difference: dict, degenerate: set[str]) -> dict:
    """A paired difference as the template words it: `mean` and `ci` in pp, the verdict and its words."""
    return {
        "method": method,
        "versus": versus,
        "mean": _pct(difference["mean"], sign=True),
        "ci": _interval(difference, sign=True),
        "n": difference["n"],
        "verdict": difference["verdict"],
        "words": stats.difference_words(difference),
        "degenerate": bool({method, versus} & degenerate),
    }


def _conclusion(comparison: dict, degenerate: set[str]) -> dict | None:
    """What the report concludes from a method against its control, as values for the template's
    conclusion block of that control (`registry.Control.conclusion`); None when the control draws none,
    and the `degenerate` block (no conclusion) when either side reads a degenerate stage 1."""
    control = registry.CONTROLS.get(comparison["versus"])
    if control is None or control.conclusion is None:
        return None
    arm = registry.MATRIX.get(comparison["method"])
    stuck = {comparison["method"], comparison["versus"]} & degenerate
    return {
        "kind": "degenerate" if stuck else control.conclusion,
        "method": comparison["method"],
        "control": comparison["versus"],
        "verdict": comparison["verdict"],
        "two_pathways": arm is not None and arm.method.regulated,  # the second pathway is another cause
    }


def _degenerate(summary: dict) -> set[str]:
    """Methods whose stage 1 is degenerate (`analysis.stage1_checks` in results.json): no conclusion rests
    on them."""
    checks = summary.get("stage1_checks") or {}
    return {
        method
        for method in summary["methods"]
        if method in registry.MATRIX
        and registry.MATRIX[method].stage1
        and (checks.get(registry.MATRIX[method].stage1) or {}).get("degenerate")
    }


def _stage1(summary: dict) -> list[dict]:
    """Per stage-1 variant (results.json's `stage1` and `stage1_checks`): runs, accuracies, seconds, flags."""

    def described(runs: dict[str, dict], key: str) -> dict:
        return stats.describe([r[key] for r in runs.values() if r.get(key) is not None])

    checks = summary.get("stage1_checks") or {}
    out = []
    for variant, runs in (summary.get("stage1") or {}).items():
        check = checks.get(variant) or {}
        test, majority = described(runs, "test_accuracy"), (check.get("majority_accuracy") or {}).get("mean")
        declared = stage1_variants.STAGE1_VARIANTS.get(variant)
        out.append(
            {
                "variant": variant,
                "n": len(runs),
                "emotion_labels": declared is None or declared.emotion_labels,
                "accuracy": _mean_std(described(runs, "eval_accuracy")),
                "test": _mean_std(test) if test["n"] else None,
                "majority": None if majority is None else f"{100 * majority:.2f}",
                "degenerate": bool(check.get("degenerate")),
                "seconds": f"{(described(runs, 'train_runtime')['mean'] or 0):.0f}",
            }
        )
    return out


def _images_per_run(images: dict) -> list[dict]:
    """Per stage (results.json's `images`): the images per split every run used, or `varies`."""
    out = []
    for stage in ("pretrain", "finetune"):
        sizes = {
            json.dumps(split_sizes, sort_keys=True)
            for seeds in (images.get(stage) or {}).values()
            for split_sizes in seeds.values()
        }
        if sizes:
            one = json.loads(sizes.pop()) if len(sizes) == 1 else None
            out.append({"stage": stage, "sizes": None if one is None else list(one.items())})
    return out


def _provenance(provenance: dict | None) -> str | None:
    """ "Plan registered …; first run started …; last run finished …; machines: …" (what is known of it)."""
    if not provenance:
        return None
    parts = [
        f"{label} {provenance[key]}"
        for label, key in (
            ("Plan registered", "plan_registered"),
            ("first run started", "first_started"),
            ("last run finished", "last_finished"),
        )
        if provenance.get(key)
    ]
    machines = [
        " / ".join(
            [m.get("cpu_model") or "unknown CPU", m.get("gpu") or "no GPU", m.get("cpu_capability") or "?"]
        )
        + f" ({m['runs']} run{'s' if m['runs'] != 1 else ''})"
        for m in provenance.get("machines") or []
    ]
    if machines:
        parts.append("machines (CPU / GPU / torch CPU capability): " + ", ".join(machines))
    text = "; ".join(parts)
    return text[:1].upper() + text[1:] + "." if parts else None  # a study without a plan: "First run ..."


def render_markdown(summary: dict, *, title: str | None = None) -> str:
    """`results.md` from `results.json`'s `summary`: the results table, the differences, the verdicts against
    the controls, the power, the reliance on the affective pathway, the pre-registered analysis (with
    `summary["analysis"]`) and the study (title, stage 1, images, notes, data, command). The template
    holds every sentence; this gives it values. `title` replaces the study's."""
    study = summary.get("study") or {}
    level = int(round(100 * summary["confidence"]))
    degenerate = _degenerate(summary)
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
        few_seeds = {"n": min(n_seeds), "df": df, "t": f"{stats.t_quantile(0.975, df):.2f}"}
    tested = sum(1 for e in summary["methods"].values() if e.get("vs_baseline")) + len(summary["comparisons"])
    data = study.get("data")
    context = {
        "title": title or study.get("title"),
        "split_name": "test" if summary["split"] == "test" else "validation",
        "level": level,
        "rows": rows,
        "images": _images_per_run(summary.get("images") or {}),
        "stage1": _stage1(summary),
        "stage1_seeds": summary.get("stage1_seeds"),
        "nested_stage1": nested_stage1(summary),
        "vs_baseline": [
            _difference(method, summary["baseline"], entry["vs_baseline"], degenerate)
            for method, entry in summary["methods"].items()
            if entry.get("vs_baseline") is not None
        ],
        "comparisons": [_difference(c["method"], c["versus"], c, degenerate) for c in summary["comparisons"]],
        "conclusions": [
            c for c in (_conclusion(c, degenerate) for c in summary["comparisons"]) if c is not None
        ],
        "reliance": [
            {
                "method": method,
                "permuted": _mean_std(entry["reliance_permuted"]),
                "mean": _mean_std(entry.get("reliance_mean")),
                "mechanism": _mechanism(entry),
            }
            for method, entry in _reliance_entries(summary).items()
            if entry.get("reliance_permuted")
        ],
        "reliance_over": "stage-1 models" if (nested_stage1(summary) or {}).get("unit") else "seeds",
        "analysis": analysis_context(summary.get("analysis")),
        "power": [
            {"method": method, "detectable": f"{100 * entry['vs_baseline']['detectable_at_80_power']:.2f}"}
            for method, entry in summary["methods"].items()
            if (entry.get("vs_baseline") or {}).get("detectable_at_80_power") is not None
        ],
        "few_seeds": few_seeds,
        "multiplicity": None
        if tested < 2
        else {"tested": tested, "chance": f"{100 * (1 - summary['confidence'] ** tested):.0f}"},
        "notes": (study.get("notes") or "").strip(),
        "data": None
        if data is None
        else {  # as JSON, in the order the study wrote them
            "stage1": json.dumps(data.get("affective_sources")),
            "taxonomy": data.get("taxonomy"),
            "stage2": json.dumps(data.get("dataset")),
        },
        "command": study.get("command"),
        "provenance": _provenance(summary.get("provenance")),
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
