"""The pre-registered analysis of a study (ablation.analysis): the plan's checks, its registration before
the runs, the primary decision with equivalence and power, Holm over the secondary family, the positive
control, the degenerate-control flag, and the report that says it all in words."""

from __future__ import annotations

import json
import re

import pytest
from records import finetune_record, write_study_run

from emoreg_hf import ablation
from emoreg_hf.ablation import analysis
from emoreg_hf.metrics import MECHANISM_NAMES
from emoreg_hf.run_record import DatasetRecord, RunRecord

METHODS = ["baseline", "emoreg_adaptive", "shuffled_emotion", "no_pretraining"]
PLAN = {
    "primary": ["emoreg_adaptive", "shuffled_emotion"],
    "secondary": [["emoreg_adaptive", "baseline"], ["no_pretraining", "baseline"]],
    "positive_control": ["no_pretraining", "baseline"],
    "equivalence_margin": 0.01,
}
BASE = [0.700, 0.712, 0.695, 0.705, 0.690, 0.708]


def _records(shifts: dict[str, list[float]]) -> dict:
    return {
        method: {seed: {"test_accuracy": BASE[seed] + d} for seed, d in enumerate(deltas)}
        for method, deltas in shifts.items()
    }


def test_the_plan_is_checked_against_the_study():
    assert analysis.check_analysis(None, METHODS) is None
    plan = analysis.check_analysis(PLAN, METHODS)
    assert plan["alpha"] == 0.05 and plan["primary"] == ["emoreg_adaptive", "shuffled_emotion"]
    bad = [
        ({"secondary": []}, "`primary: \\[method, comparator\\]` is required"),
        ({**PLAN, "primary": ["emoreg_adaptive", "transfer"]}, "not among the study's methods"),
        ({**PLAN, "primary": ["baseline", "baseline"]}, "two different methods"),
        ({**PLAN, "positive_control": ["emoreg_adaptive", "no_pretraining"]}, "must be one of the secondary"),
        ({**PLAN, "equivalence_margin": 1}, "equivalence_margin"),
        ({**PLAN, "primary_comparison": 1}, "unknown key"),
    ]
    for value, match in bad:
        with pytest.raises(ValueError, match=match):
            analysis.check_analysis(value, METHODS)
    with pytest.raises(ValueError, match="not among the study's methods"):
        ablation.load_config({"methods": ["baseline", "emoreg_adaptive"], "analysis": PLAN})


def test_stage1_models_as_the_unit_need_a_balanced_nested_study():
    nested = {"methods": METHODS, "analysis": {**PLAN, "unit": "stage1_model"}}
    assert (
        ablation.load_config({**nested, "seeds": 4, "stage1_seeds": [0, 1]}).analysis["unit"]
        == "stage1_model"
    )
    # the plans registered before `unit` existed keep their fingerprint: the key is only there when given
    assert "unit" not in analysis.check_analysis(PLAN, METHODS)
    with pytest.raises(ValueError, match="analysis.unit: one of"):
        analysis.check_analysis({**PLAN, "unit": "stage1"}, METHODS)
    with pytest.raises(ValueError, match=">= 2 different seeds"):
        ablation.load_config({**nested, "seeds": 4})
    with pytest.raises(ValueError, match="as many stage-2 seeds: 5 seeds over 2"):
        ablation.load_config({**nested, "seeds": 5, "stage1_seeds": [0, 1]})


def test_plan_is_recorded_once_and_a_later_change_is_said(tmp_path):
    first = analysis.register_plan(tmp_path, analysis.check_analysis({**PLAN, "planned_seeds": 6}, METHODS))
    again = analysis.register_plan(tmp_path, {"primary": ["a", "b"]})
    assert (
        again == first
        and json.loads((tmp_path / analysis.PLAN_FILE).read_text())["plan"]["planned_seeds"] == 6
    )
    with pytest.raises(ValueError, match="planned_seeds"):
        analysis.check_analysis({**PLAN, "planned_seeds": 1}, METHODS)
    changed = analysis.check_analysis({**PLAN, "equivalence_margin": 0.02}, METHODS)
    result = analysis.analyse(
        _records({m: [0] * 6 for m in METHODS}),
        changed,
        split="test",
        planned_seeds=6,
        stage1={},
        stage1_of={},
        registered=first,
    )
    assert result["changed_after_registration"] is True


def _analyse(shifts, stage1=None, stage1_of=None):
    plan = analysis.check_analysis(PLAN, METHODS)
    return analysis.analyse(
        _records(shifts), plan, split="test", planned_seeds=6, stage1=stage1 or {}, stage1_of=stage1_of or {}
    )


def _report(result: dict) -> str:
    """The pre-registered analysis as results.md words it (the template's sentences)."""
    summary = {"split": "test", "confidence": 0.95, "baseline": None, "methods": {}, "comparisons": []}
    return ablation.render_markdown({**summary, "analysis": result})


def _line(text: str, start: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(start))


def test_equivalent_primary_with_a_detected_positive_control():
    result = _analyse(
        {
            "baseline": [0] * 6,
            "emoreg_adaptive": [0.001, -0.002, 0.002, 0.000, -0.001, 0.001],
            "shuffled_emotion": [0.000, -0.001, 0.001, 0.001, -0.002, 0.000],
            "no_pretraining": [0.030, 0.028, 0.035, 0.031, 0.029, 0.033],
        }
    )
    primary = result["primary"]
    assert primary["decision"] == "equivalent" and primary["equivalence"]["equivalent"] is True
    assert primary["power"]["n_planned"] == 6 and primary["power"]["power_at_margin"] > 0.9
    raw = [c["p_value"] for c in result["secondary"]]
    assert [c["p_holm"] for c in result["secondary"]] == pytest.approx(
        list(analysis.stats.holm(dict(enumerate(raw))).values())
    )
    assert result["positive_control"] == {"method": "no_pretraining", "versus": "baseline", "detected": True}
    text = _report(result)
    assert "equivalent within ±1.00 pp" in _line(text, "**Conclusion.**")
    assert "The positive control was detected" in text
    assert "**Power of the planned seeds.** With the planned 6 seeds" in text


def test_a_difference_and_an_undetected_positive_control():
    result = _analyse(
        {
            "baseline": [0] * 6,
            "emoreg_adaptive": [0.021, 0.019, 0.025, 0.022, 0.018, 0.024],
            "shuffled_emotion": [0.001, -0.002, 0.002, 0.000, -0.001, 0.001],
            "no_pretraining": [0.010, -0.012, 0.004, -0.008, 0.011, -0.003],
        }
    )
    assert result["primary"]["decision"] == "different"
    assert "the emotion labels help" in _line(_report(result), "**Conclusion.**")
    assert result["positive_control"]["detected"] is False
    assert "The positive control was **not** detected" in _report(result)


def test_no_conclusion_rests_on_a_degenerate_stage_1():
    stage1 = {
        "normal": {
            s: {"test_accuracy": 0.61, "test_majority_accuracy": 0.2449, "test_modal_prediction_share": 0.3}
            for s in range(6)
        },
        "shuffled": {
            s: {"test_accuracy": 0.2449, "test_majority_accuracy": 0.2449, "test_modal_prediction_share": 1.0}
            for s in range(6)
        },
    }
    result = _analyse(
        {m: [0.001 * s for s in range(6)] for m in METHODS},
        stage1=stage1,
        stage1_of={
            "baseline": None,
            "emoreg_adaptive": "normal",
            "shuffled_emotion": "shuffled",
            "no_pretraining": "normal",
        },
    )
    assert result["stage1"]["shuffled"]["degenerate"] and not result["stage1"]["normal"]["degenerate"]
    assert result["primary"]["degenerate"] == [{"method": "shuffled_emotion", "stage1": "shuffled"}]
    text = _report(result)
    assert _line(text, "**Conclusion.**").startswith(
        "**Conclusion.** No conclusion: shuffled_emotion (its stage 1"
    )
    assert "Not used to conclude: shuffled_emotion" in _line(text, "Primary comparison:")
    assert "— **degenerate**" in _line(text, "- `shuffled`")


def _stage1_record(seed: int, accuracy: float, majority: float, shuffled: bool) -> RunRecord:
    return RunRecord(
        stage="pretrain",
        seed=seed,
        command="python recipes/pretrain.py",
        label_names=["a", "b"],
        datasets=[DatasetRecord("fer", "fer", {"train": 100, "validation": 10, "test": 10})],
        synthetic_data=False,
        hyperparameters={},
        config={},
        results={
            "eval_accuracy": accuracy,
            "test_accuracy": accuracy,
            "test_majority_accuracy": majority,
            "test_modal_prediction_share": 1.0 if shuffled else 0.4,
            "train_runtime": 5.0,
        },
        files={"results": "all_results.json"},
        emoreg_hf_version="0.1.0",
    )


MACHINE_GPU = {
    "cpu_model": "Intel Xeon",
    "cpu_capability": "AVX512",
    "gpu": "NVIDIA H100",
    "torch_threads": 8,
}
MACHINE_CPU = {"cpu_model": "AMD EPYC", "cpu_capability": "AVX2", "gpu": None, "torch_threads": 2}


def test_report_of_a_pre_registered_study(tmp_path):
    config = ablation.load_config(
        {"methods": METHODS, "seeds": 6, "output_dir": str(tmp_path), "title": "study", "analysis": PLAN}
    )
    analysis.register_plan(tmp_path, config.analysis)
    shifts = {"baseline": 0.0, "emoreg_adaptive": 0.002, "shuffled_emotion": 0.001, "no_pretraining": 0.03}
    for seed in range(6):
        for method, shift in shifts.items():
            kind = "baseline" if method == "baseline" else "emoreg"
            record = finetune_record(
                seed, BASE[seed] + shift + 0.0005 * (seed % 2) * (method != "baseline"), kind
            )
            record.started, record.finished = (
                f"2026-12-0{seed + 1}T10:00:00Z",
                f"2026-12-0{seed + 1}T11:00:00Z",
            )
            record.machine = MACHINE_GPU if seed < 4 else MACHINE_CPU
            if kind == "emoreg":
                record.results.update(test_reliance_permuted=0.004, test_reliance_mean=0.001)
            if method == "shuffled_emotion":  # evaluated before the mechanism figures: none of them
                record.results = {k: v for k, v in record.results.items() if not k.endswith(MECHANISM_NAMES)}
            write_study_run(tmp_path, f"finetune/{method}/seed{seed}", record)
        write_study_run(tmp_path, f"pretrain/normal/seed{seed}", _stage1_record(seed, 0.61, 0.245, False))
        write_study_run(tmp_path, f"pretrain/shuffled/seed{seed}", _stage1_record(seed, 0.245, 0.245, True))
    summary = ablation.write_report(config)
    text = (tmp_path / "results.md").read_text()
    assert summary["analysis"]["changed_after_registration"] is False
    registered = json.loads((tmp_path / "records" / analysis.PLAN_FILE).read_text())["registered_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", registered)
    assert (
        f"\nPlan registered {registered}; first run started 2026-12-01T10:00:00Z; last run finished "
        "2026-12-06T11:00:00Z; machines (CPU / GPU / torch CPU capability): Intel Xeon / NVIDIA H100 / AVX512 "
        "(16 runs), AMD EPYC / no GPU / AVX2 (8 runs).\n"
    ) in text  # the stage-1 records hold no machine: only the 24 stage-2 runs are counted
    no_provenance = ablation.render_markdown({k: v for k, v in summary.items() if k != "provenance"})
    assert "Plan registered" not in no_provenance and "machines (CPU" not in no_provenance
    unplanned = {**summary, "provenance": {**summary["provenance"], "plan_registered": None}}
    assert "\nFirst run started 2026-12-01T10:00:00Z; last run" in ablation.render_markdown(unplanned)
    assert "**Pre-registered analysis**" in text and "Holm-corrected as one family of 2" in text
    assert (
        "**Reliance on the affective pathway**" in text
        and "0.40 ± 0.00 pp with h_A and e(x) permuted" in text
    )
    assert (
        "- emoreg_adaptive: 0.40 ± 0.00 pp with h_A and e(x) permuted across images, 0.10 ± 0.00 pp with them "
        "replaced by their mean; 0.21 ± 0.00 pp with h_A alone permuted and 1.07 ± 0.00 pp with e(x) alone "
        "permuted, -0.03 ± 0.00 pp with h_A alone and 0.39 ± 0.00 pp with e(x) alone replaced by its mean; "
        "z_N alone scores "
    ) in text and "Changing h_A alone (e(x) kept) or e(x) alone (h_A kept)" in text
    assert (
        "- shuffled_emotion: 0.40 ± 0.00 pp with h_A and e(x) permuted across images, 0.10 ± 0.00 pp with "
        "them replaced by their mean\n"
    ) in text
    mechanism = summary["analysis"]["reliance"]
    assert mechanism["emoreg_adaptive"]["reliance_permuted_emotion"]["mean"] == pytest.approx(0.0107)
    assert "reliance_permuted_emotion" not in mechanism["shuffled_emotion"]
    assert "accuracy_emotional" not in summary["methods"]["shuffled_emotion"]
    assert summary["methods"]["emoreg_adaptive"]["accuracy_emotional"]["n"] == 6
    assert (
        "No conclusion" in text
    )  # the shuffled stage 1 is degenerate: neither the primary nor the control speaks
    assert "**degenerate**" in text and "the emotion labels, not only" not in text
    json.dumps(summary)


def test_the_study_s_controls_plan_their_own_stage_1(tmp_path):
    """The non-emotion control trains on the same sources with k-means labels; the positive control on the
    finetune data set itself; both read their own stage 1 of the same seed; the plan is recorded."""
    config = ablation.load_config(
        {
            "pretrain": {"affective_sources": [{"path": "fer"}], "max_train_samples": 100},
            "finetune": {"dataset": {"path": "/data/cifar"}},
            "seeds": 2,
            "methods": ["baseline", "emoreg_adaptive", "emoreg_kmeans", "positive_control"],
            "output_dir": str(tmp_path),
            "analysis": {"primary": ["emoreg_adaptive", "emoreg_kmeans"]},
        }
    )
    by_key = {r.key: r for r in ablation.plan_runs(config)}
    kmeans, target = by_key["pretrain/kmeans/seed1"].values, by_key["pretrain/target/seed1"].values
    assert kmeans["kmeans_labels"] is True and kmeans["affective_sources"] == [{"path": "fer"}]
    assert target["target_dataset"] == {"path": "/data/cifar"} and target["affective_sources"] is None
    assert target["max_train_samples"] == 100  # the same compute as the face stage 1
    assert by_key["finetune/positive_control/seed1"].needs == "pretrain/target/seed1"
    assert by_key["finetune/emoreg_kmeans/seed0"].needs == "pretrain/kmeans/seed0"
    default = ablation.plan_runs(ablation.load_config({"methods": ["positive_control"], "seeds": 1}))
    assert default[0].values["target_dataset"] == "cifar10"  # finetune's default data set
    analysis.register_plan(tmp_path, config.analysis)
    assert json.loads((tmp_path / analysis.PLAN_FILE).read_text())["plan"]["primary"] == [
        "emoreg_adaptive",
        "emoreg_kmeans",
    ]


def test_stage1_trained_for_fewer_seeds_is_read_by_every_stage2_seed(tmp_path):
    config = ablation.load_config(
        {
            "methods": ["baseline", "emoreg_adaptive", "emoreg_kmeans"],
            "seeds": 4,
            "output_dir": str(tmp_path),
        },
        ["--stage1_seeds", "2"],
    )
    runs = ablation.plan_runs(config)
    pretrain = [r.key for r in runs if r.stage == "pretrain"]
    assert pretrain == [
        "pretrain/normal/seed0",
        "pretrain/kmeans/seed0",
        "pretrain/normal/seed1",
        "pretrain/kmeans/seed1",
    ]
    by_key = {r.key: r for r in runs}
    assert by_key["finetune/emoreg_adaptive/seed2"].needs == "pretrain/normal/seed0"
    assert by_key["finetune/emoreg_kmeans/seed3"].values["affect_model_name_or_path"].endswith("kmeans/seed1")
    assert by_key["finetune/emoreg_adaptive/seed3"].values["seed"] == 3
    with pytest.raises(ValueError, match="stage1_seeds"):
        ablation.load_config({"stage1_seeds": []})
