"""Issue 32's groundwork: the FER-2013 recipes parse as the recipes read them and their header's FLOPs are the
model's; `--channels_last` parses and does not make a run folder's run another run; the CPU-efficiency
benchmark's pure helpers (recipe settings, optimizer arguments, the settings matrix, peaks, medians, the page)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from emoreg_hf.cli import RecipeArgumentParser
from emoreg_hf.configs import PretrainArguments
from emoreg_hf.run_settings import run_settings

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("cpu_efficiency", ROOT / "benchmarks" / "cpu_efficiency.py")
cpu_efficiency = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cpu_efficiency)

FER_RECIPES = ["recipes/fer2013/pretrain_cpu.yaml", "recipes/fer2013/pretrain_gpu.yaml"]
ZEN4 = {"avx2", "fma", "avx512f", "avx512_bf16"}


@pytest.mark.parametrize("recipe", FER_RECIPES)
def test_fer2013_recipes_parse_as_the_recipe_reads_them(recipe):
    """Both recipes are complete stage-1 configs (the parser refuses unknown keys and bad model configs):
    FER-2013 as released through its preset, 48 px grayscale, the same model, SGD with Nesterov momentum."""
    args, training_args, _ = RecipeArgumentParser(PretrainArguments).parse([str(ROOT / recipe)])
    assert args.affective_sources[0]["preset"] == "fer2013" and args.taxonomy == "ekman7"
    assert args.image_size == 48 and args.color_mode == "grayscale" and args.augmentation == "padcrop"
    model = args.model_config
    assert model["depths"] == [2, 2, 2, 2] and model["hidden_sizes"] == [32, 64, 128, 256]
    assert training_args.bf16 and training_args.optim_args == "momentum=0.9,nesterov=true"
    assert str(getattr(training_args.eval_strategy, "value", training_args.eval_strategy)) == "epoch"
    assert training_args.label_smoothing_factor == 0.1


def test_the_cpu_recipe_header_gives_its_model_s_flops_and_budget():
    """The header sizes the run from FLOPs: the model's counted FLOPs per training image are the header's
    0.475 GFLOP, and its epochs at the header's estimated rate fit the 3-hour budget."""
    import yaml

    path = ROOT / FER_RECIPES[0]
    settings = cpu_efficiency.recipe_settings(yaml.safe_load(path.read_text()))
    settings["batch_size"] = 2
    cell = {"threads": 1, "dtype": "fp32", "channels_last": False, "compile": False}
    gflop = cpu_efficiency.Setting(cell, settings).flops() / 2 / 1e9
    assert gflop == pytest.approx(0.475, abs=0.001)
    assert "0.475 GFLOP" in path.read_text()
    rate = 57.6 / gflop * 1.6  # the header's estimate: A's GFLOP/s per core, 1.6x for 2 threads
    epochs = yaml.safe_load(path.read_text())["num_train_epochs"]
    assert epochs * 28709 / rate < 9700


def test_channels_last_parses_and_does_not_change_which_run_a_folder_holds(tmp_path):
    parser = RecipeArgumentParser(PretrainArguments)
    base = [str(ROOT / FER_RECIPES[0]), "--output_dir", str(tmp_path)]
    on, training_args, _ = parser.parse([*base, "--channels_last", "true"])
    off, _, _ = RecipeArgumentParser(PretrainArguments).parse(base)
    assert on.channels_last is True and off.channels_last is False
    assert run_settings(on, training_args) == run_settings(off, training_args)
    assert "channels_last" not in run_settings(on, training_args)
    with pytest.raises(ValueError, match="channels_last"):
        RecipeArgumentParser(PretrainArguments).parse([*base, "--channels_last", "maybe"])


def test_recipe_settings_read_a_recipe_or_an_ablation_section_and_name_what_is_missing():
    fair = __import__("yaml").safe_load((ROOT / "recipes/ablations/fer_cifar10_fair.yaml").read_text())
    settings = cpu_efficiency.recipe_settings(fair)
    assert settings["image_size"] == 48 and settings["batch_size"] == 64 and settings["optim"] == "sgd"
    assert settings["model_config"]["depths"] == [1, 1, 1, 1] and settings["label_smoothing"] == 0.1
    assert cpu_efficiency.recipe_settings(fair, "finetune")["model_config"]["hidden_sizes"] == [32, 64, 128]
    with pytest.raises(ValueError, match="model_config or task_model_config and an image_size"):
        cpu_efficiency.recipe_settings({"model_name_or_path": "microsoft/resnet-50"})


def test_optimizer_arguments_and_the_settings_matrix():
    expected = {"momentum": 0.9, "nesterov": True}
    assert cpu_efficiency.parse_optim_args("momentum=0.9, nesterov=true") == expected
    assert cpu_efficiency.parse_optim_args("") == {}
    cells = cpu_efficiency.settings_matrix([1, 2], ["bf16", "fp32"], [False, True], [False, True])
    assert len(cells) == 16 and len({tuple(c.values()) for c in cells}) == 16
    assert cells[0] == {"threads": 1, "dtype": "bf16", "channels_last": False, "compile": False}
    assert cpu_efficiency.gemm_flops(1000) == 2 * 10**9


def test_theoretical_peak_comes_from_the_flags_or_is_said_to_be_unknown():
    zen4 = cpu_efficiency.theoretical_peak(ZEN4, "AuthenticAMD", 25, 17)
    assert (zen4["fp32"], zen4["bf16"]) == (32, 64) and "Zen 4" in zen4["notes"]
    amx = cpu_efficiency.theoretical_peak({"avx512f", "amx_bf16", "amx_tile"}, "GenuineIntel", 6, 143)
    assert (amx["fp32"], amx["bf16"]) == (64, 1024)
    avx2 = cpu_efficiency.theoretical_peak({"avx2", "fma"}, "GenuineIntel", 6, 85)
    assert avx2["bf16"] == avx2["fp32"] == 32
    unknown = cpu_efficiency.theoretical_peak({"sse2"}, "", -1, -1)
    assert unknown["fp32"] is None and unknown["bf16"] is None and "no known" in unknown["notes"]


def test_summary_takes_medians_per_core_and_shares_of_both_peaks_and_the_page_says_not_quiet():
    row = {"threads": 2, "dtype": "bf16", "channels_last": True, "compile": False, "batch_size": 64,
           "flops_per_step": 64 * 10**9, "step_s": [1.0, 0.5, 4.0]}  # fmt: skip
    out = cpu_efficiency.summarize(row, {(2, "bf16"): 256.0}, {"bf16": 100.0, "fp32": 50.0})
    assert out["step_s_median"] == 1.0 and out["images_per_s"] == 64 and out["images_per_s_per_core"] == 32
    assert out["achieved_gflops"] == 64 and out["of_measured_peak"] == 0.25
    assert out["theoretical_peak_gflops"] == 200 and out["of_theoretical_peak"] == 0.32
    report = {
        "recipe": "r.yaml", "date": "d", "torch": "t", "quiet": False, "load_before": 3.0, "load_after": 2.0,
        "cpu": {"name": "cpu", "cores": 2, "isa": ["avx512f"]}, "model": "m", "image_size": 48, "batch_size": 64,
        "gflop_per_image": 1.0, "steps": 5, "warmup": 1, "repeats": 3, "gemm_n": 512,
        "gemm_peaks": [{"threads": 2, "dtype": "bf16", "gflops": 256.0}],
        "theoretical": {"ghz": 2.6, "gflops_per_core": {"fp32": None, "bf16": 100.0}, "notes": "n"},
        "rows": [out, {"threads": 1, "dtype": "fp32", "channels_last": False, "compile": True, "error": "E"}],
    }  # fmt: skip
    page = cpu_efficiency.markdown(report)
    assert "NOT QUIET" in page and "| 2 | bf16 | True | False | 64.0 | 32.0 | 64.0 | 25.0% | 32.0% |" in page
    assert "failed: E" in page and "fp32 n/a GFLOP/s" in page
    assert "NOT QUIET" not in cpu_efficiency.markdown({**report, "quiet": True})


@pytest.mark.slow
def test_the_cpu_recipe_trains_on_a_generated_fer2013_csv_with_channels_last(tmp_path):
    """The recipe as written (bf16 CPU autocast, its model, evaluation every epoch) trains through
    `recipes/pretrain.py` on a generated FER-2013 release with `--channels_last true`, and the record keeps
    the option."""
    import json

    from demo_runs import run_recipe
    from test_fer_csv import write_fer_csv

    write_fer_csv(tmp_path / "fer2013.csv", rows={"Training": 4, "PublicTest": 2, "PrivateTest": 2})
    out = tmp_path / "run"
    run_recipe(
        "pretrain.py", out, "--config", str(ROOT / FER_RECIPES[0]), "--channels_last", "true",
        "--affective_sources", f"[{{preset: fer2013, data_files: {tmp_path / 'fer2013.csv'}}}]",
        "--per_device_train_batch_size", "8", "--save_strategy", "no",
    )  # fmt: skip
    info = json.loads((out / "run_info.json").read_text())
    assert info["config"]["channels_last"] is True and info["config"]["model_config"]["stem_pool"] is True
    results = json.loads((out / "all_results.json").read_text())
    assert results["test_accuracy"] is not None and results["epoch"] == 1
