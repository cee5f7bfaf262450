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


def test_paired_t_test_p_value_is_scipy_s_paired_test():
    from scipy import stats as st

    a = {0: 0.61, 1: 0.64, 2: 0.60, 3: 0.66, 4: 0.63, 5: 0.62}
    b = {0: 0.60, 1: 0.61, 2: 0.61, 3: 0.63, 4: 0.60, 5: 0.62}
    result = stats.paired_difference(a, b)
    expected = st.ttest_rel(list(a.values()), list(b.values()))
    assert result["p_value"] == pytest.approx(expected.pvalue) and result["t"] == pytest.approx(
        expected.statistic
    )
    assert stats.paired_difference({0: 0.5}, {0: 0.4})["p_value"] is None


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.02, 0.03, 0.06, 0.06
    adjusted = stats.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005, "e": None})
    assert adjusted == pytest.approx({"a": 0.03, "b": 0.06, "c": 0.06, "d": 0.02, "e": None})
    assert stats.holm({"only": 0.3}) == {"only": 0.3}
    assert stats.holm({"a": 0.6, "b": 0.7})["a"] == 1.0  # capped at 1


def test_equivalence_is_the_90_percent_interval_inside_the_margin():
    differences = [0.000, 0.004, -0.003, 0.006, 0.002, 0.003]
    paired = stats.paired_difference(dict(enumerate(differences)), dict.fromkeys(range(6), 0.0))
    result = stats.equivalence(paired, margin=0.01)
    half = stats.t_quantile(0.95, 5) * paired["std"] / math.sqrt(6)
    assert result["ci_low"] == pytest.approx(paired["mean"] - half) and result["level"] == pytest.approx(0.9)
    assert result["equivalent"] is True and result["p_value"] < 0.05
    wide = stats.equivalence(paired, margin=0.003)  # the 90% interval reaches past +0.3 pp
    assert wide["equivalent"] is False and wide["p_value"] > 0.05
    assert paired["p_value"] > 0.05 and stats.decide(paired, result["equivalent"]) == "equivalent"
    assert stats.decide({"p_value": 0.001}, False) == "different"
    assert stats.decide({"p_value": 0.001}, True) == "negligible"
    assert stats.decide({"p_value": 0.4}, False) == "inconclusive"
    assert stats.decide({"p_value": None}, None) == "unknown"
    with pytest.raises(ValueError, match="margin must be positive"):
        stats.equivalence(paired, margin=0)


def test_planned_power_carries_the_uncertainty_of_the_measured_spread():
    low, high = stats.sd_interval(1.0, 6)  # chi-square(5): 0.975 -> 12.8325, 0.025 -> 0.8312
    assert low == pytest.approx(math.sqrt(5 / 12.832502), rel=1e-5) and high == pytest.approx(
        math.sqrt(5 / 0.831212), rel=1e-5
    )
    plan = stats.planned_power(0.005, n_observed=6, n_planned=6, margin=0.01)
    assert plan["power_at_margin_interval"][0] < plan["power_at_margin"] < plan["power_at_margin_interval"][1]
    low_mdd, high_mdd = plan["detectable_at_80_power_interval"]
    assert low_mdd < plan["detectable_at_80_power"] < high_mdd
    assert plan["detectable_at_80_power"] == pytest.approx(stats.minimum_detectable_difference(0.005, 6))


def test_a_classifier_at_the_majority_rate_is_degenerate():
    assert stats.degenerate(0.2449, 0.2449)  # the shuffled-label stage 1 of the earlier study
    assert stats.degenerate(0.252, 0.2449)  # within 1 pp
    assert not stats.degenerate(0.50, 0.2449)
    assert stats.degenerate(0.50, 0.2449, modal_share=0.97)  # answers one class almost always
