"""The pre-registered analysis of `results.json` (`analysis.analyse`) as values for the report's template
(`model_cards/ablation_results.md`): each comparison with its unit, Holm-adjusted p-values and decision, the
scope a conclusion holds for, the power, tau between stage-1 models and the stage-1 checks. The template holds
the sentences; this module formats numbers and picks which sentence applies."""

from __future__ import annotations


def pct(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "–"
    return f"{100 * value:+.{digits}f}" if sign else f"{100 * value:.{digits}f}"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if value >= 0.001 else "< 0.001"


def _tested(c: dict, *, holm: bool = False) -> dict:
    """A comparison of the pre-registered analysis as the template words it (pp, p-values, equivalence)."""
    eq = c["equivalence"]
    return {
        "method": c["method"],
        "versus": c["versus"],
        "mean": pct(c["mean"], sign=True),
        "n": c["n"],
        "unit": "stage-1 models" if c.get("unit") == "stage1_model" else "seeds",
        "testable": c["n"] >= 2 and c.get("ci_low") is not None,
        "level": round(100 * (1 - (1 - eq["level"]) / 2)),  # the difference's interval: 1 - alpha
        "ci": f"[{pct(c.get('ci_low'), sign=True)}, {pct(c.get('ci_high'), sign=True)}]",
        "p": _p(c.get("p_value")),
        "p_holm": _p(c.get("p_holm")) if holm else None,
        "eq_level": int(round(100 * eq["level"])),
        "eq_ci": f"[{pct(eq.get('ci_low'), sign=True)}, {pct(eq.get('ci_high'), sign=True)}]",
        "margin": pct(eq["margin"]),
        "tost_p": _p(eq.get("p_value")),
        "tost_p_holm": _p(eq["p_holm"]) if holm and "p_holm" in eq else None,
        "decision": c["decision"],
        "positive": (c.get("mean") or 0) > 0,
        "degenerate": c.get("degenerate") or [],
    }


def _scope(scope: dict | None) -> dict | None:
    """What a conclusion holds for, in words: "for these stage-1 models (1 per arm) and this 3-epoch stage 2
    (6 seeds)"; `single`: one stage-1 model per arm, so a finding about these models, not about the labels."""
    if not scope:
        return None
    models, per_model = scope["stage1_models_per_arm"], scope.get("stage2_seeds_per_model") or 1
    epochs = scope.get("stage2_epochs")
    stage2 = f"this {epochs:g}-epoch stage 2" if isinstance(epochs, (int, float)) else "this stage 2"
    if models == 1:
        text = f"for these stage-1 models (1 per arm) and {stage2} ({scope['stage2_seeds']} seeds)"
    elif per_model > 1:
        seeds = f"{per_model} seed{'s' if per_model != 1 else ''} per model"
        text = f"for these {models} stage-1 models per arm and {stage2} ({seeds})"
    else:
        text = f"for these {models} stage-1 models per arm (one per seed) and {stage2}"
    return {"text": text, "Text": text[:1].upper() + text[1:], "single": models == 1}


def _spread(between: dict | None, name: str) -> dict | None:
    """One row of the tau section: tau with its interval and sigma, in pp."""
    if not between or "tau" not in between:
        return None
    return {
        "name": name,
        "tau": pct(between["tau"]),
        "interval": [pct(v) for v in between["tau_interval"]],
        "sigma": pct(between["sigma"]),
        "zero": between["tau"] == 0,
    }


def _tau(tau: dict | None) -> dict | None:
    """The tau section's values: per EmoReg arm and for the primary difference, and the next design."""
    if not tau:
        return None
    primary = tau["primary"]
    rows = [_spread(between, f"{method} accuracy") for method, between in tau["arms"].items()]
    main = _spread(primary, f"{primary['method']} − {primary['versus']} per stage-2 seed")
    rows = [row for row in [*rows, main] if row]
    if not rows:
        return None
    reference = next((b for b in [primary, *tau["arms"].values()] if b and "tau" in b), None)
    return {
        "groups": reference["groups"],
        "per_group": reference["per_group"],
        "level": round(100 * reference["confidence"]),
        "rows": rows,
        "primary": main,
        "next": [
            {
                "k": design["stage2_seeds_per_model"],
                "models": "more than 10,000" if design["models"] is None else design["models"],
                "models_high": "more than 10,000"
                if design["models_at_tau_high"] is None
                else design["models_at_tau_high"],
            }
            for design in primary.get("next_design") or []
        ],
        "margin": pct((primary.get("next_design") or [{}])[0].get("margin")),
    }


def _stage1_checks(result: dict) -> list[dict]:
    out = []
    for variant, check in result["stage1"].items():
        accuracy, association = check["accuracy"], check.get("kmeans_association")
        out.append(
            {
                "variant": variant,
                "accuracy": pct(accuracy.get("mean")),
                "spread": None if accuracy.get("std") is None else pct(accuracy["std"]),
                "majority": pct(check["majority_accuracy"].get("mean")),
                "degenerate": check["degenerate"],
                "association": None
                if not association
                else {
                    "v": f"{association['cramers_v']['mean']:.3f}",
                    "share": f"{100 * association['information_share']['mean']:.2f}",
                },
            }
        )
    return out


def analysis_context(result: dict | None) -> dict | None:
    """The pre-registered analysis (`analysis.analyse`, in results.json) as values for the template."""
    if not result:
        return None
    power = result["primary"].get("power")
    primary = _tested(result["primary"])
    return {
        "registered_at": result.get("registered_at"),
        "changed": result.get("changed_after_registration"),
        "primary": primary,
        "scope": _scope(result.get("scope")),
        "power": None
        if not power
        else {
            "n_planned": power["n_planned"],
            "n_observed": power["n_observed"],
            "unit": primary["unit"],
            "std": pct(power["std"]),
            "std_interval": [pct(v) for v in power["std_interval"]],
            "margin": pct(power["margin"]),
            "at_margin": f"{100 * power['power_at_margin']:.0f}",
            "at_margin_interval": [f"{100 * v:.0f}" for v in power["power_at_margin_interval"]],
            "detectable": pct(power["detectable_at_80_power"]),
            "detectable_interval": [pct(v) for v in power["detectable_at_80_power_interval"]],
        },
        "tau": _tau(result.get("tau")),
        "secondary": [_tested(c, holm=True) for c in result["secondary"]],
        "positive_control": result.get("positive_control"),
        "stage1": _stage1_checks(result),
    }


def nested_stage1(summary: dict) -> dict | None:
    """For a study whose stage-2 seeds share fewer stage-1 models (`stage1_seeds`, more than one): how many
    stage-2 seeds read each, and whether the pre-registered analysis takes the stage-1 model as its unit."""
    stage1_seeds, seeds = summary.get("stage1_seeds"), summary.get("seeds")
    if not stage1_seeds or len(stage1_seeds) < 2 or not seeds:
        return None
    plan = (summary.get("analysis") or {}).get("plan") or {}
    return {
        "models": len(stage1_seeds),
        "per_model": len(seeds) // len(stage1_seeds),
        "unit": plan.get("unit") == "stage1_model",
    }


__all__ = ["analysis_context", "nested_stage1", "pct"]
