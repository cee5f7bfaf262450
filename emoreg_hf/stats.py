"""Statistics over seeds, shared by the model cards and the ablation reports.

One definition of "differs beyond noise": the Student-t interval of the paired difference over the seeds
both configurations ran (same seed = same data split and initialisation draw). A card and a results table
built from the same runs therefore always give the same verdict.

For a study with a pre-registered analysis (docs/method.md, "How results are judged"): the paired t-test's
p-value, Holm's correction of a family of secondary comparisons, an equivalence test against a margin
(TOST: the 90% interval inside ±margin), the power a planned number of seeds has with its uncertainty, and
the test that tells a degenerate control (a classifier at the majority-class rate) from one that learned;
for a nested study, the between-group SD of a one-way random-effects ANOVA with its MLS interval.
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


def models_for_power(
    difference: float, std: float, *, confidence: float = CONFIDENCE, power: float = 0.8, n_max: int = 10_000
) -> int | None:
    """The smallest number of paired units (>= 2) whose two-sided paired t-test detects a true mean
    `difference` with probability `power` when the per-unit differences have standard deviation `std`
    (`paired_power`); None when even `n_max` does not."""
    if std <= 0:
        return 2
    low, high = 2, 2
    while paired_power(difference, std, high, confidence) < power:
        if high >= n_max:
            return None
        low, high = high, min(n_max, 2 * high)
    while low < high:  # power grows with n: the first n that reaches it
        middle = (low + high) // 2
        if paired_power(difference, std, middle, confidence) >= power:
            high = middle
        else:
            low = middle + 1
    return high


def random_effects(groups: Sequence[Sequence[float]], confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Balanced one-way random-effects ANOVA (groups of equal size k >= 2, at least 2 groups): the
    between-group SD tau (tau^2 = max(0, (MSB - MSW) / k)), the within-group SD sigma (sigma^2 = MSW), and
    tau's `confidence` interval by the modified-large-sample (MLS) method of Graybill and Wang (1980, JASA
    75:869-873) in its form for a difference of two mean squares, (MSB - MSW) / k (Ting, Burdick, Graybill,
    Jeyaratnam and Lu 1990, J. Stat. Comput. Simul. 35:135-143; Burdick and Graybill 1992, "Confidence
    Intervals on Variance Components", section 3.5): why not a Wald interval, tau^2 is a difference of two
    noisy mean squares, and MLS keeps close to its nominal level even with few groups. A bound below 0 is
    reported as 0 (a variance is not negative)."""
    groups = [[float(v) for v in group] for group in groups]
    a, k = len(groups), len(groups[0]) if groups else 0
    if a < 2 or k < 2 or any(len(group) != k for group in groups):
        sizes = [len(group) for group in groups]
        raise ValueError(
            f"a balanced one-way random-effects ANOVA needs >= 2 groups of one size >= 2, got sizes {sizes}"
        )
    means = [math.fsum(group) / k for group in groups]
    grand = math.fsum(means) / a
    msb = k * math.fsum((m - grand) ** 2 for m in means) / (a - 1)
    msw = math.fsum((v - m) ** 2 for group, m in zip(groups, means) for v in group) / (a * (k - 1))
    low, high = mls_difference_interval(msb, a - 1, msw, a * (k - 1), 1 / k, 1 / k, confidence)
    tau2 = max(0.0, (msb - msw) / k)
    return {
        "groups": a,
        "per_group": k,
        "msb": msb,
        "msw": msw,
        "tau": math.sqrt(tau2),
        "sigma": math.sqrt(msw),
        "tau_interval": [math.sqrt(max(0.0, low)), math.sqrt(max(0.0, high))],
        "confidence": confidence,
    }


def mls_difference_interval(
    s1: float, df1: int, s2: float, df2: int, c1: float, c2: float, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """The two-sided MLS interval of c1 * E[s1] - c2 * E[s2] from two independent mean squares (Burdick and
    Graybill 1992, section 3.5; `random_effects` cites the method); bounds may be negative."""
    alpha = (1 - confidence) / 2

    def f(
        upper_tail: float, d1: float, d2: float
    ) -> float:  # the F value with `upper_tail` area to its right
        return (
            float(st.f.isf(upper_tail, d1, d2))
            if math.isfinite(d2)
            else float(st.chi2.isf(upper_tail, d1) / d1)
        )

    g1, g2 = 1 - 1 / f(alpha, df1, math.inf), 1 - 1 / f(alpha, df2, math.inf)
    h1, h2 = 1 / f(1 - alpha, df1, math.inf) - 1, 1 / f(1 - alpha, df2, math.inf) - 1
    f_high, f_low = f(alpha, df1, df2), f(1 - alpha, df1, df2)
    g12 = ((f_high - 1) ** 2 - g1**2 * f_high**2 - h2**2) / f_high
    h12 = ((1 - f_low) ** 2 - h1**2 * f_low**2 - g2**2) / f_low
    estimate, a, b = c1 * s1 - c2 * s2, c1 * s1, c2 * s2
    lower = estimate - math.sqrt(max(0.0, g1**2 * a**2 + h2**2 * b**2 + g12 * a * b))
    upper = estimate + math.sqrt(max(0.0, h1**2 * a**2 + g2**2 * b**2 + h12 * a * b))
    return lower, upper


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
    "mls_difference_interval",
    "models_for_power",
    "paired_difference",
    "paired_power",
    "planned_power",
    "random_effects",
    "sd_interval",
    "t_quantile",
    "verdict",
]
