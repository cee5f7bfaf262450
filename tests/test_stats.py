"""Statistics shared by cards and ablation reports, against table values and hand computations."""

import math

import pytest

from emoreg_hf import stats


@pytest.mark.parametrize(
    "p, df, expected",
    [
        (0.975, 1, 12.706204736174705),
        (0.975, 2, 4.302652729749464),
        (0.975, 4, 2.7764451051977987),
        (0.975, 29, 2.045229642132703),
        (0.95, 10, 1.8124611228107335),
        (0.025, 3, -3.182446305284263),
    ],
)
def test_t_quantile_matches_tables(p, df, expected):
    assert stats.t_quantile(p, df) == pytest.approx(expected, rel=1e-9)


def test_describe_by_hand():
    result = stats.describe([0.5, 0.6, 0.7])
    # mean 0.6; std (ddof=1) = sqrt((0.01 + 0 + 0.01) / 2) = 0.1; sem = 0.1 / sqrt(3)
    half = 4.302652729749464 * 0.1 / math.sqrt(3)  # t(0.975, 2) x sem = 0.248414...
    assert result["n"] == 3
    assert result["mean"] == pytest.approx(0.6)
    assert result["std"] == pytest.approx(0.1)
    assert result["ci_low"] == pytest.approx(0.6 - half) and result["ci_low"] == pytest.approx(
        0.351586, abs=1e-6
    )
    assert result["ci_high"] == pytest.approx(0.848414, abs=1e-6)
    single = stats.describe([0.4])
    assert single["mean"] == 0.4 and single["std"] is None and single["ci_low"] is None


def test_paired_difference_by_hand():
    method = {0: 0.50, 1: 0.60, 2: 0.70}
    baseline = {0: 0.40, 1: 0.55, 2: 0.60, 3: 0.99}  # seed 3 has no partner and is left out
    result = stats.paired_difference(method, baseline)
    # differences 0.10, 0.05, 0.10: mean 0.083333, std sqrt(0.0025 / 3) = 0.0288675, sem 0.0166667
    assert result["seeds"] == [0, 1, 2]
    assert result["mean"] == pytest.approx(0.0833333, abs=1e-7)
    assert result["std"] == pytest.approx(0.0288675, abs=1e-7)
    assert result["ci_low"] == pytest.approx(0.0116224, abs=1e-6)
    assert result["ci_high"] == pytest.approx(0.1550443, abs=1e-6)
    assert result["verdict"] == "higher"
    noisy = stats.paired_difference({0: 0.5, 1: 0.6}, {0: 0.55, 1: 0.5})
    assert noisy["verdict"] == "noise"
    assert stats.paired_difference({0: 0.1, 1: 0.2}, {0: 0.3, 1: 0.41})["verdict"] == "lower"


def test_minimum_detectable_difference_is_where_power_reaches_80_percent():
    # G*Power, paired t-test, two-sided alpha 0.05, power 0.8, n = 10: effect size dz = 0.996
    assert stats.minimum_detectable_difference(1.0, 10) == pytest.approx(0.996, abs=1e-3)
    for n in (3, 5):
        mde = stats.minimum_detectable_difference(0.02, n)
        assert stats.paired_power(mde, 0.02, n) == pytest.approx(0.8, abs=1e-9)
        assert stats.paired_power(mde / 2, 0.02, n) < 0.8 < stats.paired_power(mde * 1.5, 0.02, n)
    assert stats.minimum_detectable_difference(0.02, 3) > stats.minimum_detectable_difference(0.02, 5)


def test_verdicts_in_words():
    assert (
        stats.difference_words(stats.paired_difference({0: 0.5, 1: 0.6}, {0: 0.55, 1: 0.5})) == "within noise"
    )
    assert (
        stats.difference_words(stats.paired_difference({0: 0.5}, {0: 0.4})) == "too few paired seeds to tell"
    )


def test_power_stays_finite_with_two_seeds():
    mde = stats.minimum_detectable_difference(0.01, 2)  # one degree of freedom: far tails of the noncentral t
    assert mde > 0 and stats.paired_power(mde, 0.01, 2) == pytest.approx(0.8, abs=1e-6)
