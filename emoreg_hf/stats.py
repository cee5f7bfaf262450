"""Statistics over seeds, shared by the model cards and the ablation reports.

One definition of "differs beyond noise": the Student-t interval of the paired difference over the seeds
both configurations ran (same seed = same data split and initialisation draw). A card and a results table
built from the same runs therefore always give the same verdict.
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
    """`a - b` over the seeds both have (`{seed: value}`): mean difference, std, interval and verdict."""
    seeds = sorted(set(a) & set(b), key=str)
    stats = describe([a[s] - b[s] for s in seeds], confidence)
    stats["seeds"] = seeds
    stats["verdict"] = verdict(stats)
    return stats


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
    "describe",
    "difference_words",
    "minimum_detectable_difference",
    "paired_difference",
    "paired_power",
    "t_quantile",
    "verdict",
]
