"""The recipes as a user runs them: YAML + CLI parsing, the real recipes' schemas, accelerate configs,
output-dir rules, resume after an interruption, and a real 2-process gloo run."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from crash_at_step import CRASH_AT_STEP
from safetensors.torch import load_file

from emoreg_hf.cli import RecipeArgumentParser
from emoreg_hf.configs import FinetuneArguments, PretrainArguments
from emoreg_hf.data import check_sources_available, missing_sources
from emoreg_hf.run_dir import prepare_output_dir
from emoreg_hf.run_record import utc_now

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
REAL_RECIPES = sorted(
    p for d in ("vit-base-patch16", "resnet50", "convnext-tiny") for p in (RECIPES / d).glob("*.yaml")
)
# A tiny demo finetune: the task pathway alone, so it needs no stage-1 checkpoint.
TINY_BASELINE = [
    "--method", "baseline", "--max_train_samples", "128", "--max_eval_samples", "64",
    "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "64", "--num_train_epochs", "2",
    "--eval_strategy", "no", "--logging_steps", "2", "--dataloader_num_workers", "0",
]  # fmt: skip


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, **kwargs)
    return result


# -- configuration ---------------------------------------------------------------------------------------


def test_yaml_then_cli_overrides_any_field(tmp_path):
    config = tmp_path / "finetune.yaml"
    config.write_text(
        "dataset: cifar100\nmethod: baseline\ntask_model_config: {model_type: resnet}\n"
        "learning_rate: 1e-4\nnum_train_epochs: 3\noutput_dir: out\n"
    )
    args, training_args, path = RecipeArgumentParser(FinetuneArguments).parse(
        [
            str(config),
            "--learning_rate=0.5",
            "--regulation",
            "fixed",
            "--dataset",
            "{path: parquet, data_dir: ./cifar, label_column: fine_label}",
            "--gradient_accumulation_steps",
            "4",
            "--use_cpu",
        ]
    )
    assert path == str(config)
    assert training_args.learning_rate == 0.5  # CLI beats YAML
    assert training_args.num_train_epochs == 3  # YAML beats the default; `3` stays a number
    assert training_args.gradient_accumulation_steps == 4 and training_args.use_cpu is True
    assert args.regulation == "fixed" and args.method == "baseline"
    assert args.dataset == {"path": "parquet", "data_dir": "./cifar", "label_column": "fine_label"}


def test_unknown_keys_list_close_matches(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "dataset: demo\nmethod: baseline\ntask_model_config: {model_type: resnet}\nregulaton: fixed\n"
    )
    with pytest.raises(ValueError) as err:
        RecipeArgumentParser(FinetuneArguments).parse([str(config), "--learning_rat", "1e-3"])
    message = str(err.value)
    assert "regulaton (did you mean regulation" in message
    assert "learning_rat (did you mean learning_rate" in message


@pytest.mark.parametrize(
    "override, expected",
    [
        (
            ["--regulation", "sometimes"],
            "--regulation 'sometimes' is not valid; allowed values: fixed, learned, adaptive",
        ),
        (["--method", "emoreg", "--affect_model_name_or_path", "none"], "needs --affect_model_name_or_path"),
        (["--task_model_config", "{depths: [1]}"], "needs a model_type key"),
        (["--num_train_epochs", "three"], "--num_train_epochs: cannot read 'three' as float"),
    ],
)
def test_bad_values_name_the_field(override, expected):
    base = ["--dataset", "demo", "--method", "baseline", "--task_model_config", "{model_type: resnet}"]
    with pytest.raises(ValueError, match=None) as err:
        RecipeArgumentParser(FinetuneArguments).parse(base + override)
    assert expected in str(err.value)


@pytest.mark.parametrize("path", REAL_RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_real_recipes_validate(path):
    script = PretrainArguments if path.name.startswith("pretrain") else FinetuneArguments
    # bf16 is for the GPUs these recipes target; everything else parses as written.
    args, training_args, _ = RecipeArgumentParser(script).parse([str(path), "--bf16", "false"])
    assert training_args.output_dir.startswith("outputs/")
    if script is PretrainArguments:
        names = [s["source"] for s in args.affective_sources]
        assert names == ["fer2013", "affectnet", "emoset", "fi"] and args.taxonomy == "valence3"
        assert all(s.get("obtain") for s in args.affective_sources)
    else:
        assert args.dataset in ("cifar10", "cifar100") and args.method == "emoreg"


def test_missing_sources_fail_fast_with_how_to_obtain(tmp_path):
    present = tmp_path / "fer"
    present.mkdir()
    sources = [
        {"path": "imagefolder", "data_dir": str(present), "source": "fer2013"},
        {"path": "imagefolder", "data_dir": str(tmp_path / "nope"), "source": "affectnet", "obtain": "ask"},
        {"path": "someorg/emoset"},  # a Hub id cannot be checked offline
    ]
    assert missing_sources(sources) == [
        f"source 'affectnet': {tmp_path / 'nope'} not found. To obtain it: ask"
    ]
    with pytest.raises(FileNotFoundError, match="nothing was trained"):
        check_sources_available(sources)


@pytest.mark.slow  # spawns processes or trains
def test_pretrain_recipe_refuses_to_start_without_its_data(tmp_path):
    result = run(
        [
            sys.executable,
            "recipes/pretrain.py",
            "recipes/vit-base-patch16/pretrain_affect.yaml",
            "--bf16",
            "false",
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    assert result.returncode != 0
    assert "source 'fer2013': data/fer2013 not found" in result.stderr
    assert "kaggle.com/datasets/msambare/fer2013" in result.stderr
    assert not (tmp_path / "out").exists()


def test_accelerate_configs_load_with_accelerates_loader():
    from accelerate.commands.config.config_args import load_config_from_file

    found = {}
    for path in sorted((RECIPES / "accelerate_configs").glob("*.yaml")):
        config = load_config_from_file(str(path))
        found[path.stem] = str(config.distributed_type).split(".")[-1]
        if path.stem == "cpu":
            assert config.use_cpu and config.num_processes == 1  # what launch.slurm's `cpu` runs per node
    assert found == {
        "cpu": "NO",
        "ddp": "MULTI_GPU",
        "fsdp": "FSDP",
        "fsdp2": "FSDP",
        "single_gpu": "NO",
        "zero2": "DEEPSPEED",
        "zero3": "DEEPSPEED",
    }


def test_non_empty_output_dir_is_refused_unless_overwrite(tmp_path):
    from records import write_checkpoint, write_started

    (tmp_path / "model.safetensors").write_text("a finished model")
    _, training_args, _ = RecipeArgumentParser(FinetuneArguments, RECIPES / "demo" / "finetune.yaml").parse(
        ["--output_dir", str(tmp_path)]
    )
    with pytest.raises(ValueError, match="not empty and holds no checkpoint"):
        prepare_output_dir(training_args, overwrite=False)
    assert (tmp_path / "model.safetensors").exists()
    write_checkpoint(tmp_path / "checkpoint-4")
    # checkpoint-* without a record of its run (any Trainer writes them): neither resumed blindly nor cleared
    with pytest.raises(ValueError, match="settings it was saved with cannot be known"):
        prepare_output_dir(training_args, overwrite=False)
    with pytest.raises(ValueError, match="but no record of a run"):
        prepare_output_dir(training_args, overwrite=True)
    write_started(tmp_path)  # an interrupted run of these recipes
    assert prepare_output_dir(training_args, overwrite=False) == str(tmp_path / "checkpoint-4")
    assert prepare_output_dir(training_args, overwrite=True) is None


# -- running the recipes ---------------------------------------------------------------------------------


INTERRUPT_AFTER = (
    "import runpy, sys\n"
    + CRASH_AT_STEP
    + """sys.argv = ["recipes/finetune.py", *sys.argv[1:]]
runpy.run_path("recipes/finetune.py", run_name="__main__")
"""
)


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    # Bitwise equality needs deterministic inputs: with random augmentation, accelerate's loader has already
    # drawn the next batch's augmentation when the checkpoint saves the RNG state, so a resumed run draws
    # that one batch differently (same distribution, different bits).
    common = [
        *TINY_BASELINE,
        "--save_strategy",
        "steps",
        "--save_steps",
        "5",
        "--seed",
        "7",
        "--augmentation",
        "none",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = run([sys.executable, "recipes/finetune.py", *common, "--output_dir", str(straight)])
    assert result.returncode == 0, result.stderr[-3000:]

    crash = run([sys.executable, "-c", INTERRUPT_AFTER.format(step=5), *common, "--output_dir", str(resumed)])
    assert crash.returncode != 0 and "simulated crash at step 5" in crash.stderr
    assert (resumed / "checkpoint-5").is_dir() and not (resumed / "model.safetensors").exists()

    # The same command again: the recipe finds checkpoint-5 and resumes instead of starting over.
    second_start = utc_now()
    result = run([sys.executable, "recipes/finetune.py", *common, "--output_dir", str(resumed)])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming from" in result.stderr
    # Each record says when it ran (UTC); the resumed one keeps the first start and the step it went on from.
    records = [json.loads((d / "run_info.json").read_text()) for d in (straight, resumed)]
    assert records[0]["resumed_from_step"] is None and records[1]["resumed_from_step"] == 5
    assert records[1]["started"] <= second_start <= records[1]["finished"]
    assert records[0]["started"] <= records[0]["finished"] <= records[1]["started"]
    assert records[1]["machine"]["world_size"] == 1 and records[1]["machine"]["cpu_capability"]

    states = [json.loads((d / "trainer_state.json").read_text()) for d in (straight, resumed)]
    assert states[0]["global_step"] == states[1]["global_step"] == 16  # 2 epochs x 128 / 16
    weights = [load_file(d / "model.safetensors") for d in (straight, resumed)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=0, msg=name)


@pytest.mark.slow
def test_two_process_gloo_run_matches_single_process_keys(tmp_path, demo_runs):
    emoreg = [
        *TINY_BASELINE[2:],
        "--method", "emoreg", "--affect_model_name_or_path", str(demo_runs.pretrain), "--eval_strategy", "epoch",
    ]  # fmt: skip
    single = run([sys.executable, "recipes/finetune.py", *emoreg, "--output_dir", str(tmp_path / "one")])
    assert single.returncode == 0, single.stderr[-3000:]
    with socket.socket() as probe:  # a free port: torchrun's static rendezvous does not accept port 0
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    double = run([*torchrun, "recipes/finetune.py", *emoreg, "--output_dir", str(tmp_path / "two")])
    assert double.returncode == 0, double.stderr[-3000:]

    results = [json.loads((tmp_path / d / "all_results.json").read_text()) for d in ("one", "two")]
    assert results[0].keys() == results[1].keys()
    assert {"eval_accuracy", "test_accuracy", "test_rho_mean", "test_emotion_entropy"} <= results[1].keys()
    mechanism = {
        f"test_reliance_{how}{part}" for how in ("permuted", "mean") for part in ("", "_affect", "_emotion")
    }
    mechanism |= {"test_accuracy_non_emotional", "test_accuracy_emotional", "eval_reliance_permuted_emotion"}
    assert mechanism | {"test_majority_accuracy"} <= results[1].keys()
    info = json.loads((tmp_path / "two" / "run_info.json").read_text())["hyperparameters"]
    assert info["world_size"] == 2 and info["global_batch_size"] == 2 * 16
    states = [json.loads((tmp_path / d / "trainer_state.json").read_text()) for d in ("one", "two")]
    assert states[0]["global_step"] == 2 * 128 // 16
    assert states[1]["global_step"] == 2 * 128 // (2 * 16)  # each step consumed both ranks' batches
    # Every test image was evaluated once across the two ranks (no padding duplicates in the metrics).
    predictions = json.loads((tmp_path / "two" / "predictions_test.json").read_text())
    assert len(predictions["labels"]) == 64


def test_mixup_mixes_training_batches_only(tmp_path):
    from transformers import AutoModelForImageClassification, ResNetConfig, TrainingArguments

    from emoreg_hf.data import Collator
    from emoreg_hf.trainer import EmoRegTrainer

    examples = [
        {"pixel_values": torch.full((3, 8, 8), 10 * i, dtype=torch.uint8), "labels": i} for i in range(4)
    ]
    model = AutoModelForImageClassification.from_config(
        ResNetConfig(embedding_size=8, hidden_sizes=[8], depths=[1], num_labels=4)
    )
    args = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, report_to=[],
        remove_unused_columns=False, use_cpu=True,
    )  # fmt: skip
    collator = Collator(num_classes=4, mixup_alpha=1.0)
    trainer = EmoRegTrainer(model=model, args=args, train_dataset=examples, data_collator=collator)
    train_batch = next(iter(trainer.get_train_dataloader()))
    assert train_batch["labels"].shape == (4, 4)  # soft targets: mixed
    for loader in (trainer.get_eval_dataloader(examples), trainer.get_test_dataloader(examples)):
        batch = next(iter(loader))
        assert batch["labels"].tolist() == [0, 1, 2, 3]
        assert batch["pixel_values"][:, 0, 0, 0].tolist() == [0, 10, 20, 30]  # images untouched
    assert trainer.data_collator is collator
