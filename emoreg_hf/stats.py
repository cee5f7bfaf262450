"""Statistics over seeds, shared by the model cards and the ablation reports.

One definition of "differs beyond noise": the Student-t interval of the paired difference over the seeds
both configurations ran (same seed = same data split and initialisation draw). A card and a results table
built from the same runs therefore always give the same verdict.

For a study with a pre-registered analysis (docs/method.md, "How results are judged"): the paired t-test's
p-value, Holm's correction of a family of secondary comparisons, an equivalence test against a margin
(TOST: the 90% interval inside ±margin), the power a planned number of seeds has with its uncertainty, and
the test that tells a degenerate control (a classifier at the majority-class rate) from one that learned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from scipy import optimize
from scipy import stats as st

CONFIDENCE = 0.95
VERDICTS = ("higher", "lower", "noise", "unknown")


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if df <= 0:
        raise ValueError(f"df must be positive, got {df}")
    return float(st.t.ppf(p, df))


def describe(values: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """n, mean, sample std (ddof=1), standard error and the Student-t interval of the mean.

    With one value only the mean is known; std and the interval are None.
    """
    values = [float(v) for v in values]
    n = len(values)
    out: dict[str, Any] = {"n": n, "mean": None, "std": None, "sem": None, "ci_low": None, "ci_high": None}
    if n == 0:
        return out
    mean = math.fsum(values) / n
    out["mean"] = mean
    if n >= 2:
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        sem = std / math.sqrt(n)
        half = t_quantile(0.5 + confidence / 2.0, n - 1) * sem
        out.update(std=std, sem=sem, ci_low=mean - half, ci_high=mean + half)
    return out


def verdict(stats: Mapping[str, Any]) -> str:
    """`higher` / `lower` when the interval excludes 0, `noise` when it contains it, `unknown` (n < 2)."""
    if stats.get("ci_low") is None:
        return "unknown"
    if stats["ci_low"] > 0:
        return "higher"
    if stats["ci_high"] < 0:
        return "lower"
    return "noise"


def paired_difference(
    a: Mapping[Any, float], b: Mapping[Any, float], confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """`a - b` over the seeds both have (`{seed: value}`): mean difference, std, interval, verdict, and the
    two-sided paired t-test's `t` and `p_value` (None with fewer than 2 seeds or no spread)."""
    seeds = sorted(set(a) & set(b), key=str)
    differences = [a[s] - b[s] for s in seeds]
    stats = describe(differences, confidence)
    stats["seeds"] = seeds
    stats["verdict"] = verdict(stats)
    stats["t"], stats["p_value"] = None, None
    if stats["n"] >= 2 and stats["std"]:
        test = st.ttest_1samp(differences, 0.0)
        stats["t"], stats["p_value"] = float(test.statistic), float(test.pvalue)
    return stats


def holm(p_values: Mapping[Any, float | None]) -> dict[Any, float | None]:
    """Holm's step-down adjustment of a family of p-values (`{name: p}`; None stays None): the family-wise
    error rate stays at the nominal level whatever the dependence between the comparisons."""
    known = sorted(((p, name) for name, p in p_values.items() if p is not None), key=lambda x: x[0])
    m, running, adjusted = len(known), 0.0, {name: None for name in p_values}
    for rank, (p, name) in enumerate(known):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[name] = running
    return adjusted


def equivalence(
    difference: Mapping[str, Any], margin: float, alpha: float = 1 - CONFIDENCE
) -> dict[str, Any]:
    """Two one-sided tests (TOST) of `paired_difference`'s mean against ±`margin`: equivalent when the
    (1 − 2·alpha) interval (90% for alpha 0.05) lies inside (−margin, +margin). Returns that interval,
    the TOST p-value (the larger of the two one-sided ones) and `equivalent` (None with < 2 seeds)."""
    if margin <= 0:
        raise ValueError(f"the equivalence margin must be positive, got {margin}")
    n, mean, std = difference.get("n", 0), difference.get("mean"), difference.get("std")
    out: dict[str, Any] = {"margin": margin, "level": 1 - 2 * alpha, "ci_low": None, "ci_high": None}
    out.update(p_value=None, equivalent=None)
    if n < 2 or mean is None or std is None:
        return out
    df, sem = n - 1, std / math.sqrt(n)
    half = t_quantile(1 - alpha, df) * sem
    out.update(ci_low=mean - half, ci_high=mean + half)
    if sem == 0:
        out.update(p_value=0.0 if abs(mean) < margin else 1.0, equivalent=abs(mean) < margin)
        return out
    p_lower = float(st.t.sf((mean + margin) / sem, df))  # H0: difference <= -margin
    p_upper = float(st.t.cdf((mean - margin) / sem, df))  # H0: difference >= +margin
    out.update(p_value=max(p_lower, p_upper), equivalent=-margin < out["ci_low"] and out["ci_high"] < margin)
    return out


def decide(
    difference: Mapping[str, Any],
    equivalent: bool | None,
    p_value: float | None = None,
    alpha: float = 1 - CONFIDENCE,
) -> str:
    """One word from a difference test and an equivalence test: `different` (the difference is beyond noise
    and not within the margin), `equivalent` (no difference beyond noise, and within the margin),
    `negligible` (beyond noise but within the margin), `inconclusive` (neither), `unknown` (too few seeds).
    `p_value`: the (adjusted) p-value to test with; by default the difference's own."""
    p = difference.get("p_value") if p_value is None else p_value
    if p is None or equivalent is None:
        return "unknown"
    significant = p < alpha
    if significant:
        return "negligible" if equivalent else "different"
    return "equivalent" if equivalent else "inconclusive"


def sd_interval(std: float, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The chi-square interval of a standard deviation estimated from `n` values."""
    if n < 2 or std <= 0:
        raise ValueError(
            f"an interval for a standard deviation needs n >= 2 and std > 0, got n={n}, std={std}"
        )
    df = n - 1
    low = std * math.sqrt(df / float(st.chi2.ppf(0.5 + confidence / 2, df)))
    high = std * math.sqrt(df / float(st.chi2.ppf(0.5 - confidence / 2, df)))
    return low, high


def planned_power(
    std: float, n_observed: int, n_planned: int, margin: float, confidence: float = CONFIDENCE
) -> dict[str, Any]:
    """What `n_planned` paired seeds can detect, from the std of the paired differences measured over
    `n_observed` seeds, with the uncertainty of that std (its 95% chi-square interval): the power to detect a
    true difference of `margin`, and the smallest difference detected with 80% power, each as
    estimate and [optimistic, pessimistic] bounds."""
    low, high = sd_interval(std, n_observed)
    return {
        "n_planned": n_planned,
        "n_observed": n_observed,
        "std": std,
        "std_interval": [low, high],
        "margin": margin,
        "power_at_margin": paired_power(margin, std, n_planned, confidence),
        "power_at_margin_interval": [
            paired_power(margin, high, n_planned, confidence),
            paired_power(margin, low, n_planned, confidence),
        ],
        "detectable_at_80_power": minimum_detectable_difference(std, n_planned, confidence=confidence),
        "detectable_at_80_power_interval": [
            minimum_detectable_difference(low, n_planned, confidence=confidence),
            minimum_detectable_difference(high, n_planned, confidence=confidence),
        ],
    }


DEGENERATE_TOLERANCE = 0.01  # within 1 pp of always answering the majority class
COLLAPSED_SHARE = 0.95  # or 95% of the predictions one class


def degenerate(accuracy: float, majority_rate: float, modal_share: float | None = None) -> bool:
    """A classifier that learned nothing usable: its accuracy is within `DEGENERATE_TOLERANCE` of always
    answering the majority class, or (when known) `COLLAPSED_SHARE` of its predictions are one class. A
    control built on it is constant, so no conclusion may rest on it."""
    if accuracy <= majority_rate + DEGENERATE_TOLERANCE:
        return True
    return modal_share is not None and modal_share >= COLLAPSED_SHARE


def paired_power(difference: float, std: float, n: int, confidence: float = CONFIDENCE) -> float:
    """Power of the two-sided paired t-test over `n` seeds to detect a true mean `difference` when the
    per-seed differences have standard deviation `std` (noncentral t)."""
    if n < 2 or std <= 0:
        raise ValueError(f"power needs n >= 2 and std > 0, got n={n}, std={std}")
    df = n - 1
    critical = t_quantile(0.5 + confidence / 2.0, df)
    noncentrality = abs(difference) / (std / math.sqrt(n))  # the power of a two-sided test is symmetric
    upper = float(st.nct.sf(critical, df, noncentrality))
    lower = float(st.nct.cdf(-critical, df, noncentrality))  # vanishing; scipy returns nan far in the tail
    return upper + (lower if math.isfinite(lower) else 0.0)


def minimum_detectable_difference(
    std: float, n: int, *, confidence: float = CONFIDENCE, power: float = 0.8
) -> float:
    """The smallest true paired difference the design detects with probability `power`, given the
    per-seed std of the differences and `n` paired seeds."""
    if not 0.0 < power < 1.0:
        raise ValueError(f"power must be in (0, 1), got {power}")
    if paired_power(0.0, std, n, confidence) >= power:
        return 0.0
    high = std
    while paired_power(high, std, n, confidence) < power:
        high *= 2.0
    return float(
        optimize.brentq(lambda d: paired_power(d, std, n, confidence) - power, 0.0, high, xtol=1e-12)
    )


def difference_words(stats: Mapping[str, Any]) -> str:
    """The verdict of `paired_difference` in words, as cards and reports print it."""
    return {
        "higher": "higher beyond noise",
        "lower": "lower beyond noise",
        "noise": "within noise",
        "unknown": "too few paired seeds to tell",
    }[stats["verdict"]]


__all__ = [
    "CONFIDENCE",
    "VERDICTS",
    "decide",
    "degenerate",
    "describe",
    "difference_words",
    "equivalence",
    "holm",
    "minimum_detectable_difference",
    "paired_difference",
    "paired_power",
    "planned_power",
    "sd_interval",
    "t_quantile",
    "verdict",
]
