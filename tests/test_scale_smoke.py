"""benchmarks/scale_smoke.py's generated data passes the recipes' own data checks, in process: the smoke
takes minutes per run, so a new refusal in the data layer (such as the unseen-class check, which once
failed all 24 stage-2 runs) must fail here first, in seconds."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from emoreg_hf.cli import RecipeArgumentParser
from emoreg_hf.configs import FinetuneArguments, PretrainArguments
from emoreg_hf.data import check_sources_available, load_stage1_data, load_target_dataset, resolve_target_spec
from emoreg_hf.training import cap

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("scale_smoke", ROOT / "benchmarks" / "scale_smoke.py")
scale_smoke = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scale_smoke)


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory) -> tuple[Path, dict]:
    work = tmp_path_factory.mktemp("scale_smoke")
    return work, scale_smoke.write_data(work / "data")


def parsed(recipe: str, stage: str, work: Path, data: dict):
    """The smoke's own command line for `stage` of `recipe` (fp32), parsed by the recipe's parser."""
    options = SimpleNamespace(steps=3, batch_size=2, eval_samples=2)
    affect = work / "stage1"  # only named; data loading does not read it
    command = scale_smoke.recipe_command(recipe, "fp32", stage, work / stage, data, affect, options)
    assert command[1] == ("recipes/pretrain.py" if stage == "pretrain" else "recipes/finetune.py")
    script_class = PretrainArguments if stage == "pretrain" else FinetuneArguments
    return RecipeArgumentParser(script_class).parse(command[2:])


@pytest.mark.parametrize("recipe", list(scale_smoke.RECIPES))
def test_smoke_data_passes_both_stages_data_checks(smoke_data, recipe, monkeypatch):
    work, data = smoke_data
    monkeypatch.chdir(ROOT)  # the commands name the recipes' YAMLs relative to the repository root

    # Stage 1, as recipes/pretrain.py loads it: the affective image folder mapped onto valence3.
    args, training_args, _ = parsed(recipe, "pretrain", work, data)
    check_sources_available(args.affective_sources)
    stage1 = load_stage1_data(args, training_args.seed, cap)
    assert stage1["names"] == ["negative", "neutral", "positive"]
    assert len(stage1["splits"]["train"]) >= training_args.max_steps * 2  # 3 steps of batch 2, one epoch
    assert {"validation", "test"} <= set(stage1["splits"])

    # Stage 2 (EmoReg and the baseline read the same data), as recipes/finetune.py loads it: every class
    # check of the data layer, the unseen-class refusal included, passes without dropping a row.
    for stage in ("emoreg", "baseline"):
        args, training_args, _ = parsed(recipe, stage, work, data)
        assert args.method == stage
        splits = load_target_dataset(
            resolve_target_spec(args.dataset),
            validation_split_size=args.validation_split_size,
            seed=training_args.seed,
            on_bad_image=args.on_bad_image,
        )
        assert splits["validation"].features["label"].num_classes == 100  # CIFAR-100's real head
        assert len(splits["test"]) == 8
        assert not any(report.get("unseen_class_dropped") for report in splits.load_report.values())
        # The validation split is carved from train after that check (at random: 20 rows cannot stratify 100
        # classes); with the YAMLs' seed no class is left without training rows.
        assert set(splits["validation"]["label"]) | set(splits["test"]["label"]) <= set(
            splits["train"]["label"]
        )
