"""The stage-1 model as the unit of analysis (ablation.replicates, issue 28): a synthetic nested study of 4
stage-1 models x 2 stage-2 seeds with a known structure; per-model means and comparisons paired over the 4
models; tau and sigma against a direct numpy computation, the MLS interval against its hand formula, tau = 0
when the models differ less than stage-2 seeds do; the report's words; the card's stage-1 sentence."""

from __future__ import annotations

import math

import numpy as np
import pytest
from records import finetune_record, pretrain_record, write_run, write_study_run
from scipy import stats as st

from emoreg_hf import ablation, stats
from emoreg_hf.ablation import analysis, replicates
from emoreg_hf.publish.card import build_model_card
from emoreg_hf.publish.facts import shared_stage1
from emoreg_hf.publish.runs import load_run_folder

METHODS = ["baseline", "emoreg_adaptive", "emoreg_kmeans"]
PLAN = {
    "primary": ["emoreg_adaptive", "emoreg_kmeans"],
    "secondary": [["emoreg_adaptive", "baseline"], ["emoreg_kmeans", "baseline"]],
    "equivalence_margin": 0.01,
    "planned_seeds": 4,
    "unit": "stage1_model",
}
SEEDS, STAGE1_SEEDS = list(range(8)), [0, 1, 2, 3]
BASELINE = [0.700, 0.704, 0.698, 0.702, 0.701, 0.703, 0.699, 0.700]
MODEL = {  # per stage-1 model: a large effect for the emotion models, a small one for k-means
    "emoreg_adaptive": [-0.020, 0.010, -0.005, 0.015],
    "emoreg_kmeans": [0.001, -0.001, 0.002, 0.000],
}
NOISE = [0.002, -0.001, 0.003, -0.002, -0.002, 0.001, -0.003, 0.002]  # per stage-2 seed


def _accuracy(method: str, seed: int) -> float:
    if method == "baseline":
        return BASELINE[seed]
    return (
        BASELINE[seed] + MODEL[method][seed % 4] + NOISE[seed] * (1 if method == "emoreg_adaptive" else -0.5)
    )


def _records() -> dict:
    return {m: {s: {"test_accuracy": _accuracy(m, s)} for s in SEEDS} for m in METHODS}


def _analyse(records=None, plan=PLAN):
    return analysis.analyse(
        records or _records(),
        analysis.check_analysis(plan, METHODS),
        split="test",
        planned_seeds=8,
        stage1={},
        stage1_of={"baseline": None, "emoreg_adaptive": "normal", "emoreg_kmeans": "kmeans"},
        groups=replicates.stage1_groups(SEEDS, STAGE1_SEEDS),
    )


def _grid(method: str) -> np.ndarray:
    """(stage-1 model, stage-2 seed of it) accuracies, as the nested design assigns them."""
    return np.array([[_accuracy(method, s), _accuracy(method, s + 4)] for s in STAGE1_SEEDS])


def test_stage2_seeds_are_grouped_by_the_stage1_model_they_read():
    assert replicates.stage1_groups(SEEDS, STAGE1_SEEDS) == {0: [0, 4], 1: [1, 5], 2: [2, 6], 3: [3, 7]}
    # the same rule as the runner's (config.stage1_seed)
    config = ablation.load_config({"methods": METHODS, "seeds": 8, "stage1_seeds": STAGE1_SEEDS})
    assert [ablation.config.stage1_seed(config, s) for s in SEEDS] == [0, 1, 2, 3, 0, 1, 2, 3]


def test_comparisons_are_paired_over_the_four_stage1_models():
    result = _analyse()
    primary = result["primary"]
    adaptive, kmeans = _grid("emoreg_adaptive").mean(axis=1), _grid("emoreg_kmeans").mean(axis=1)
    assert primary["n"] == 4 and primary["unit"] == "stage1_model"
    assert [primary["unit_values"][str(s)]["method"] for s in STAGE1_SEEDS] == pytest.approx(list(adaptive))
    assert primary["mean"] == pytest.approx(float(np.mean(adaptive - kmeans)))
    assert primary["p_value"] == pytest.approx(float(st.ttest_rel(adaptive, kmeans).pvalue))
    assert [c["n"] for c in result["secondary"]] == [4, 4]
    assert primary["power"]["n_planned"] == 4 and primary["power"]["n_observed"] == 4
    # the same records paired over stage-2 seeds: n = 8, another answer
    over_seeds = _analyse(plan={k: v for k, v in PLAN.items() if k != "unit"})
    assert over_seeds["primary"]["n"] == 8 and "tau" not in over_seeds


def test_a_missing_stage2_seed_leaves_its_model_on_the_seeds_both_arms_have():
    records = _records()
    del records["emoreg_kmeans"][4]
    primary = _analyse(records)["primary"]
    assert primary["n"] == 4
    assert primary["unit_values"]["0"] == {
        "method": pytest.approx(_accuracy("emoreg_adaptive", 0)),
        "versus": pytest.approx(_accuracy("emoreg_kmeans", 0)),
    }


def _numpy_anova(grid: np.ndarray) -> tuple[float, float, float, float]:
    a, k = grid.shape
    msb = k * grid.mean(axis=1).var(ddof=1)
    msw = grid.var(axis=1, ddof=1).mean()
    return msb, msw, math.sqrt(max(0.0, (msb - msw) / k)), math.sqrt(msw)


def test_tau_and_sigma_against_numpy():
    tau = _analyse()["tau"]
    for method in ("emoreg_adaptive", "emoreg_kmeans"):
        msb, msw, t, sigma = _numpy_anova(_grid(method))
        got = tau["arms"][method]
        assert (got["groups"], got["per_group"]) == (4, 2)
        assert (got["msb"], got["msw"], got["tau"], got["sigma"]) == pytest.approx((msb, msw, t, sigma))
    assert tau["arms"]["emoreg_adaptive"]["tau"] > 0.01  # the planted per-model effect, SD ~1.6 pp
    difference = _grid("emoreg_adaptive") - _grid("emoreg_kmeans")
    assert tau["primary"]["tau"] == pytest.approx(_numpy_anova(difference)[2])
    assert tau["primary"]["sigma"] == pytest.approx(_numpy_anova(difference)[3])


def test_the_mls_interval_is_the_hand_formula():
    msb, msw, a, k = 4.0e-4, 1.0e-4, 4, 2
    n1, n2, alpha = a - 1, a * (k - 1), 0.025
    # Burdick & Graybill (1992) sec. 3.5, F values with `alpha` area to their right
    f1, f2 = st.chi2.ppf(1 - alpha, n1) / n1, st.chi2.ppf(1 - alpha, n2) / n2
    f1_low, f2_low = st.chi2.ppf(alpha, n1) / n1, st.chi2.ppf(alpha, n2) / n2
    g1, g2, h1, h2 = 1 - 1 / f1, 1 - 1 / f2, 1 / f1_low - 1, 1 / f2_low - 1
    f12, f12_low = st.f.ppf(1 - alpha, n1, n2), st.f.ppf(alpha, n1, n2)
    g12 = ((f12 - 1) ** 2 - g1**2 * f12**2 - h2**2) / f12
    h12 = ((1 - f12_low) ** 2 - h1**2 * f12_low**2 - g2**2) / f12_low
    c1, c2 = msb / k, msw / k
    lower = (msb - msw) / k - math.sqrt(g1**2 * c1**2 + h2**2 * c2**2 + g12 * c1 * c2)
    upper = (msb - msw) / k + math.sqrt(h1**2 * c1**2 + g2**2 * c2**2 + h12 * c1 * c2)
    assert stats.mls_difference_interval(msb, n1, msw, n2, 1 / k, 1 / k) == pytest.approx((lower, upper))
    # without within-model noise it is the exact chi-square interval of MSB / k
    exact = (msb / k * n1 / st.chi2.ppf(1 - alpha, n1), msb / k * n1 / st.chi2.ppf(alpha, n1))
    assert stats.mls_difference_interval(msb, n1, 1e-15, n2, 1 / k, 1 / k) == pytest.approx(exact)
    # random_effects reports tau's interval as the square roots of the truncated bounds
    groups = [[0.01, 0.03], [0.05, 0.04], [0.0, 0.02], [0.03, 0.06]]
    result = stats.random_effects(groups)
    low, high = stats.mls_difference_interval(result["msb"], 3, result["msw"], 4, 0.5, 0.5)
    assert result["tau_interval"] == pytest.approx([math.sqrt(max(0.0, low)), math.sqrt(high)])


def test_tau_is_zero_when_models_differ_less_than_stage2_seeds():
    groups = [[0.0, 0.02], [0.01, 0.03], [0.02, 0.0], [0.015, 0.005]]  # MSB 5e-5 below MSW 1.6e-4
    result = stats.random_effects(groups)
    assert result["msb"] < result["msw"] and result["tau"] == 0
    assert result["tau_interval"][0] == 0 and result["tau_interval"][1] > 0  # a tau this large not ruled out
    assert result["sigma"] == pytest.approx(_numpy_anova(np.array(groups))[3])
    equal = stats.random_effects([[0.60, 0.70], [0.70, 0.60], [0.62, 0.68], [0.68, 0.62]])  # equal means
    assert equal["tau"] == 0 and equal["tau_interval"] == [0.0, 0.0]
    text = ablation.render_markdown(
        {
            "split": "test",
            "confidence": 0.95,
            "baseline": None,
            "methods": {},
            "comparisons": [],
            "analysis": {
                **_analyse(),
                "tau": {
                    "arms": {},
                    "primary": {"method": "a", "versus": "b", **result, "next_design": []},
                },
            },
        }
    )
    assert (
        "τ = 0.00 pp [0.00, 1.60]: the primary difference varies no more between these stage-1 models" in text
    )
    with pytest.raises(ValueError, match="balanced"):
        stats.random_effects([[0.1, 0.2], [0.3]])


def test_the_next_design_is_sized_from_tau_and_sigma():
    between = replicates.between_models(
        {s: _accuracy("emoreg_adaptive", s) for s in SEEDS},
        replicates.stage1_groups(SEEDS, STAGE1_SEEDS),
        0.01,
    )
    for design in between["next_design"]:
        std = math.sqrt(between["tau"] ** 2 + between["sigma"] ** 2 / design["stage2_seeds_per_model"])
        n = design["models"]
        assert stats.paired_power(0.01, std, n) >= 0.8 > stats.paired_power(0.01, std, n - 1)
        assert design["models_at_tau_high"] >= n
    one, two = between["next_design"]
    assert one["models"] >= two["models"]  # a second stage-2 seed per model never needs more models
    assert stats.models_for_power(0.01, 0.0) == 2


def _write_study(tmp_path) -> dict:
    config = ablation.load_config(
        {
            "methods": METHODS,
            "seeds": 8,
            "stage1_seeds": STAGE1_SEEDS,
            "output_dir": str(tmp_path),
            "analysis": PLAN,
        }
    )
    for method in METHODS:
        for seed in SEEDS:
            kind = "baseline" if method == "baseline" else "emoreg"
            record = finetune_record(seed, _accuracy(method, seed), kind)  # its test accuracy
            write_study_run(tmp_path, f"finetune/{method}/seed{seed}", record)
    for variant in ("normal", "kmeans"):
        for seed in STAGE1_SEEDS:
            write_study_run(tmp_path, f"pretrain/{variant}/seed{seed}", pretrain_record(seed, 0.6))
    return ablation.write_report(config)


def test_the_report_of_a_nested_study_speaks_of_stage1_models(tmp_path):
    summary = _write_study(tmp_path)
    assert summary["analysis"]["primary"]["n"] == 4
    assert summary["analysis"]["planned_seeds"] == 4  # the plan's count of stage-1 models
    assert summary["analysis"]["scope"] == {
        "stage1_models_per_arm": 4,
        "stage2_seeds": 8,
        "stage2_seeds_per_model": 2,
        "stage2_epochs": 3.0,
    }
    text = (tmp_path / "results.md").read_text()
    assert "over 4 paired stage-1 models;" in text
    conclusion = next(line for line in text.splitlines() if line.startswith("**Conclusion.**"))
    assert "for these 4 stage-1 models per arm and this 3-epoch stage 2 (2 seeds per model)" in conclusion
    assert "not a finding about the labels themselves" not in text
    assert "so 2 stage-2 seeds share each stage-1 model; the pre-registered analysis averages" in text
    tau = summary["analysis"]["tau"]["primary"]
    line = next(line for line in text.splitlines() if line.startswith("τ = "))
    assert line.startswith(f"τ = {100 * tau['tau']:.2f} pp [") and "the next design needs" in line
    assert "**Between stage-1 models (τ).**" in text and "- emoreg_adaptive accuracy: τ = " in text
    assert "Graybill–Wang modified-large-sample" in text
    # the mechanism figures are described over the 4 stage-1 models (each the mean of its 2 stage-2 seeds)
    assert summary["analysis"]["reliance"]["emoreg_adaptive"]["permuted"]["n"] == 4
    assert "split, mean ± std over stage-1 models)" in text


def test_holm_over_the_tost_p_values_can_take_equivalence_away():
    """Two secondary comparisons each equivalent on its own TOST (p < 0.05) but not after Holm."""
    base = [0.700, 0.712, 0.695, 0.705, 0.690, 0.708]
    deltas = [-0.0020, -0.0095, 0.0010, -0.0070, -0.0005, -0.0100]
    shifts = {"emoreg_adaptive": -0.0005, "emoreg_kmeans": -0.0010}  # TOST p 0.028 and 0.038
    records = {"baseline": {s: {"test_accuracy": b} for s, b in enumerate(base)}}
    for method, shift in shifts.items():
        records[method] = {s: {"test_accuracy": b + d + shift} for s, (b, d) in enumerate(zip(base, deltas))}
    plan = analysis.check_analysis({k: v for k, v in PLAN.items() if k != "unit"}, METHODS)
    result = analysis.analyse(records, plan, split="test", planned_seeds=6, stage1={}, stage1_of={})
    for comparison in result["secondary"]:
        equivalence = comparison["equivalence"]
        assert equivalence["p_value"] < 0.05 and equivalence["equivalent"] is True  # on its own
        assert equivalence["p_holm"] >= 0.05 and equivalence["equivalent_holm"] is False
        assert comparison["decision"] == "inconclusive"
    raw = {i: c["equivalence"]["p_value"] for i, c in enumerate(result["secondary"])}
    assert [c["equivalence"]["p_holm"] for c in result["secondary"]] == list(stats.holm(raw).values())
    summary = {"split": "test", "confidence": 0.95, "baseline": None, "methods": {}, "comparisons": []}
    text = ablation.render_markdown({**summary, "analysis": result})
    secondary = [line for line in text.splitlines() if line.startswith("- **emoreg_")]
    assert len(secondary) == 2 and all("equivalence within ±1.00 pp not shown" in line for line in secondary)
    assert all("TOST Holm-adjusted p = " in line for line in secondary)
    assert "**equivalent**" not in text and "not equivalent" not in text


def _stage2_run(tmp_path, seed: int, stage1_seed: int):
    path = f"/path/to/study/pretrain/normal/seed{stage1_seed}"
    record = finetune_record(seed, 0.6, "emoreg", models={"affect": path, "affect_path": path})
    return load_run_folder(write_run(tmp_path / f"seed{seed}", record))


def test_the_card_says_which_stage1_model_its_seeds_read(tmp_path):
    shared = [_stage2_run(tmp_path / "shared", s, 0) for s in range(6)]
    assert shared_stage1(shared) == [{"model": "normal/seed0", "seeds": "0-5", "n": 6}]
    card = str(build_model_card(shared))
    assert "Seeds 0-5 read one stage-1 model (`normal/seed0`): their spread is stage-2\ntraining's" in card
    nested = [_stage2_run(tmp_path / "nested", s, s % 2) for s in range(4)]
    assert shared_stage1(nested) == [
        {"model": "normal/seed0", "seeds": "0, 2", "n": 2},
        {"model": "normal/seed1", "seeds": "1, 3", "n": 2},
    ]
    card = str(build_model_card(nested))
    assert "Stage-1 models read: seeds 0, 2 `normal/seed0`; seeds 1, 3 `normal/seed1`." in card
    assert "not independent draws of stage 1" in card
    assert shared_stage1(shared[:1]) is None
