"""Test-time augmentation and the EMA of the weights (issue 32): the views and their averaging, the EMA's
arithmetic, its checkpoint and resume, the parse-time refusals, the card's rows, and a recipe run with both."""

import json
import math

import pytest
import torch
from records import pretrain_record, write_checkpoint, write_run
from safetensors.torch import load_file
from tiny_models import resnet_config
from transformers import AutoModelForImageClassification, TrainerControl, TrainerState, TrainingArguments
from transformers.modeling_outputs import ImageClassifierOutput

from emoreg_hf.configs import PretrainArguments
from emoreg_hf.data import Collator, DeviceFinisher
from emoreg_hf.ema import EMA_FILE, WeightEMA, weight_ema
from emoreg_hf.evaluation import build_compute_metrics
from emoreg_hf.trainer import EmoRegTrainer
from emoreg_hf.tta import averaged_log_probs, enlarged_size, views

NAMES = ["anger", "joy", "calm"]


def examples(n: int = 10, size: int = 12, seed: int = 0) -> list[dict]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "pixel_values": torch.randint(0, 256, (3, size, size), generator=generator, dtype=torch.uint8),
            "labels": i % len(NAMES),
        }
        for i in range(n)
    ]


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForImageClassification.from_config(resnet_config(NAMES))


class MirrorSymmetric(torch.nn.Module):
    """Logits averaged over the image and its mirror image: a model no flip can change."""

    _no_split_modules = None
    dtype = torch.float32

    def __init__(self):
        super().__init__()
        self.inner = tiny_model()
        self.config = self.inner.config

    def forward(self, pixel_values, labels=None):
        logits = (self.inner(pixel_values).logits + self.inner(pixel_values.flip(-1)).logits) / 2
        return ImageClassifierOutput(logits=logits)


def trainer_for(model, tmp_path, **kwargs) -> EmoRegTrainer:
    arguments = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, per_device_eval_batch_size=4, report_to=[],
        remove_unused_columns=False, use_cpu=True, seed=0, **kwargs,
    )  # fmt: skip
    finisher = DeviceFinisher(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    return EmoRegTrainer(
        model=model,
        args=arguments,
        data_collator=Collator(num_classes=len(NAMES)),
        finisher=finisher,
        compute_metrics=build_compute_metrics(NAMES),
    )


# -- test-time augmentation ---------------------------------------------------------------------------------


def test_flip_tta_of_a_flip_invariant_model_equals_plain_evaluation(tmp_path):
    trainer = trainer_for(MirrorSymmetric(), tmp_path)
    data = examples(10)  # 3 batches of 4, the last one partial
    plain = trainer.predict(data, metric_key_prefix="test")
    with trainer.test_time_augmentation("flip"):
        flipped = trainer.predict(data, metric_key_prefix="test_tta")
    assert trainer.tta == "none"  # the block ends the augmentation
    torch.testing.assert_close(
        torch.as_tensor(flipped.predictions),
        torch.as_tensor(plain.predictions).log_softmax(-1),
        atol=1e-5,
        rtol=0,
    )
    for metric in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "loss"):
        assert flipped.metrics[f"test_tta_{metric}"] == pytest.approx(
            plain.metrics[f"test_{metric}"], abs=1e-5
        )


def test_flip_tta_differs_for_a_model_that_sees_the_flip(tmp_path):
    trainer = trainer_for(tiny_model(), tmp_path)
    data = examples(8)
    plain = torch.as_tensor(trainer.predict(data).predictions).log_softmax(-1)
    with trainer.test_time_augmentation("flip"):
        flipped = torch.as_tensor(trainer.predict(data).predictions)
    assert not torch.allclose(plain, flipped, atol=1e-4)


def test_ten_crop_views_are_corners_and_centre_of_the_image_and_its_mirror():
    size = (16, 16)
    assert enlarged_size(size) == (18, 18)
    x = torch.rand(2, 3, 18, 18)
    crops = list(views(x, "ten_crop", size))
    assert len(crops) == 10 and all(c.shape == (2, 3, 16, 16) for c in crops)
    mirror = x.flip(-1)
    for base, first in ((x, 0), (mirror, 5)):
        torch.testing.assert_close(crops[first], base[..., :16, :16])  # top left
        torch.testing.assert_close(crops[first + 1], base[..., :16, 2:])  # top right
        torch.testing.assert_close(crops[first + 3], base[..., 2:, 2:])  # bottom right
        torch.testing.assert_close(crops[first + 4], base[..., 1:17, 1:17])  # centre
    # A batch at the input size is first enlarged: the crops keep the size the model takes.
    assert all(c.shape == (2, 3, 16, 16) for c in views(torch.rand(2, 3, 16, 16), "ten_crop", size))
    with pytest.raises(ValueError, match="tta must be one of"):
        list(views(x, "five_crop", size))


@pytest.mark.parametrize("max_images, calls", [(3, [3] * 10), (12, [12, 12, 6]), (1, [3] * 10)])
def test_ten_crop_averages_the_softmax_in_bounded_batches(max_images, calls):
    weights = torch.randn(3 * 16 * 16, 4)
    seen = []

    def logits_of(images):
        seen.append(images.shape[0])
        return images.flatten(1) @ weights

    x = torch.rand(3, 3, 18, 18)
    averaged = averaged_log_probs(logits_of, x, "ten_crop", (16, 16), max_images)
    assert seen == calls  # whole views per call, as many as fit in max_images (at least one)
    expected = torch.stack([(v.flatten(1) @ weights).softmax(-1) for v in views(x, "ten_crop", (16, 16))])
    torch.testing.assert_close(averaged, expected.mean(0).log())
    assert averaged.shape == (3, 4)


# -- the EMA of the weights ---------------------------------------------------------------------------------


def _step(ema: WeightEMA, model, step: int) -> None:
    state = TrainerState()
    state.global_step = step
    ema.on_step_end(None, state, TrainerControl(), model=model)


def test_ema_follows_the_decay_on_a_known_sequence_of_weights():
    model = torch.nn.Sequential(torch.nn.Linear(2, 1, bias=False), torch.nn.BatchNorm1d(1))
    ema = WeightEMA(0.75)
    ema.attach(model)
    expected = None
    for step, value in enumerate([1.0, 3.0, -2.0, 5.0], start=1):
        with torch.no_grad():
            model[0].weight.fill_(value)
            model[1].running_mean.fill_(10 * value)
        _step(ema, model, step)
        expected = value if expected is None else 0.75 * expected + 0.25 * value  # the first step copies
        assert ema.module[0].weight.flatten().tolist() == pytest.approx([expected] * 2)
        assert ema.module[1].running_mean.item() == pytest.approx(10 * expected)  # buffers averaged too
    assert expected == pytest.approx(0.75 * (0.75 * (0.75 * 1 + 0.25 * 3) + 0.25 * -2) + 0.25 * 5)


def test_ema_warmup_raises_the_decay_to_its_value():
    ema = WeightEMA(0.99, warmup=True)
    ema.attach(torch.nn.Linear(2, 2))
    assert ema.ema.get_decay(1) == 0.0
    assert ema.ema.get_decay(4) == pytest.approx(1 - 4 ** (-2 / 3))
    assert ema.ema.get_decay(10_000) == 0.99


def test_ema_applied_swaps_the_weights_in_and_back():
    model = torch.nn.Linear(2, 2)
    ema = WeightEMA(0.5)
    ema.attach(model)
    own = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ema.module.weight.fill_(7.0)
    with ema.applied(model):
        assert torch.all(model.weight == 7.0)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, own[key], rtol=0, atol=0)


def test_resume_restores_the_ema_from_the_checkpoint(tmp_path):
    data = examples(16)
    settings = dict(max_steps=4, save_strategy="steps", save_steps=2, learning_rate=0.05, data_seed=0)

    def train(folder, resume=None):
        trainer = trainer_for(tiny_model(), folder, **settings)
        trainer.train_dataset = data
        trainer.add_callback(WeightEMA(0.5))
        ema = weight_ema(trainer)
        ema.resume_from = resume
        restored = {}
        if resume is not None:  # the EMA as the resumed run starts with it
            original = ema.on_train_begin

            def capture(*args, **kwargs):
                original(*args, **kwargs)
                restored.update({k: v.clone() for k, v in ema.module.state_dict().items()})

            ema.on_train_begin = capture
        trainer.train(resume_from_checkpoint=resume)
        return ema, restored

    straight, _ = train(tmp_path / "straight")
    saved = load_file(tmp_path / "straight" / "checkpoint-2" / EMA_FILE)
    model_weights = load_file(tmp_path / "straight" / "checkpoint-2" / "model.safetensors")
    assert any(not torch.equal(saved[k], model_weights[k]) for k in saved if k in model_weights)

    resumed, restored = train(tmp_path / "resumed", resume=str(tmp_path / "straight" / "checkpoint-2"))
    assert restored.keys() == saved.keys()
    for key, value in saved.items():
        torch.testing.assert_close(restored[key], value, rtol=0, atol=0, msg=key)
    # Two steps more from the restored average reach the uninterrupted run's average.
    for key, value in straight.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[key], value, msg=key)


def test_a_checkpoints_ema_file_is_not_taken_for_its_model_weights(tmp_path):
    from safetensors.torch import save_model

    from emoreg_hf.checkpoints import load_checkpoint_weights

    model, other = tiny_model(0), tiny_model(1)
    save_model(model, str(tmp_path / "model.safetensors"))
    save_model(other, str(tmp_path / EMA_FILE))
    target = tiny_model(2)
    load_checkpoint_weights(target, str(tmp_path))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, rtol=0, atol=0)


def test_a_checkpoint_with_a_truncated_ema_is_not_resumed(tmp_path):
    from safetensors.torch import save_model

    from emoreg_hf.checkpoints import checkpoint_problem

    checkpoint = write_checkpoint(tmp_path / "checkpoint-4")
    save_model(tiny_model(), str(checkpoint / EMA_FILE))
    assert checkpoint_problem(checkpoint) is None
    data = (checkpoint / EMA_FILE).read_bytes()
    (checkpoint / EMA_FILE).write_bytes(data[: len(data) // 2])  # a save cut short
    assert f"{EMA_FILE} is truncated or corrupt" in checkpoint_problem(checkpoint)


def test_a_run_finished_from_its_last_checkpoint_evaluates_and_saves_its_ema(tmp_path):
    """The recipes' train -> save -> evaluate (`training.train_and_evaluate`) on a checkpoint at the run's last
    step, which is finished without training: the EMA comes from the checkpoint, is saved (`ema_save`), and
    the TTA and EMA evaluations land under their own keys beside the plain ones."""
    import datasets
    import numpy as np
    import PIL.Image

    from emoreg_hf.data import LoaderTransform
    from emoreg_hf.training import train_and_evaluate

    images = [
        PIL.Image.fromarray(np.random.RandomState(i).randint(0, 256, (12, 12, 3), np.uint8))
        for i in range(12)
    ]
    rows = datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(12)]})
    split = rows.cast_column("image", datasets.Image()).with_transform(LoaderTransform(12))
    first = trainer_for(tiny_model(), tmp_path / "first", max_steps=2, save_strategy="steps", save_steps=2)
    first.train_dataset = split
    first.add_callback(WeightEMA(0.5))
    first.train()
    checkpoint = tmp_path / "first" / "checkpoint-2"

    trainer = trainer_for(tiny_model(seed=3), tmp_path / "second", max_steps=2)
    trainer.add_callback(WeightEMA(0.5))
    splits = {"train": split, "validation": split}
    results, _ = train_and_evaluate(
        trainer, splits, checkpoint=str(checkpoint), label_names=NAMES, tta="ten_crop", ema_save="ema"
    )
    assert {
        f"eval{v}_{m}" for v in ("", "_tta", "_ema") for m in ("accuracy", "ece", "loss")
    } <= results.keys()
    saved, ema = load_file(tmp_path / "second" / "model.safetensors"), load_file(checkpoint / EMA_FILE)
    trained = load_file(checkpoint / "model.safetensors")
    for key, value in ema.items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0, msg=key)
        torch.testing.assert_close(trainer.model.state_dict()[key], trained[key], rtol=0, atol=0, msg=key)
    written = json.loads((tmp_path / "second" / "all_results.json").read_text())
    assert written["eval_ema_accuracy"] == results["eval_ema_accuracy"]


# -- options and the card -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, message",
    [
        ({"tta": "five_crop"}, "--tta 'five_crop' is not valid; allowed values: none, flip, ten_crop"),
        ({"ema_decay": 1.5}, "--ema_decay 1.5: must be in (0, 1)"),
        ({"ema_decay": 0.0}, "--ema_decay 0.0: must be in (0, 1)"),
        ({"ema_save": "ema"}, "--ema_save ema needs --ema_decay"),
        ({"ema_warmup": True}, "--ema_warmup true needs --ema_decay"),
        ({"ema_save": "best"}, "--ema_save 'best' is not valid; allowed values: raw, ema"),
    ],
)
def test_bad_averaging_options_are_refused_when_parsed(options, message):
    with pytest.raises(ValueError) as error:
        PretrainArguments(
            affective_sources=[{"path": "demo:synthetic-faces"}], model_name_or_path="x", **options
        )
    assert message in str(error.value)


def test_card_shows_tta_and_ema_rows_and_says_which_weights(tmp_path):
    from emoreg_hf.publish import build_model_card

    record = pretrain_record(7, 0.6)
    for variant, shift in (("tta", 0.02), ("ema", 0.01)):
        for prefix in ("eval", "test"):
            record.results |= {f"{prefix}_{variant}_accuracy": 0.6 + shift, f"{prefix}_{variant}_loss": 1.4}
    record.config |= {"tta": "ten_crop", "ema_decay": 0.999, "ema_warmup": True, "ema_save": "raw"}
    card = str(build_model_card([write_run(tmp_path / "run", record)]))
    assert "| test, ten-crop TTA | 0.6200 |" in card and "| validation, EMA weights | 0.6100 |" in card
    assert card.index("| test |") < card.index("| test, ten-crop TTA |") < card.index("| test, EMA weights |")
    assert "10 crops at the input size" in card and "decay 0.999, warmed up" in card
    assert "the weights in this repository are the trained ones, not the EMA's" in card
    model_index = [line for line in card.splitlines() if "metric_type" in line or "type: accuracy" in line]
    assert model_index and not any("tta" in line or "ema" in line for line in model_index)

    record.config |= {"tta": "flip", "ema_save": "ema"}
    card = str(build_model_card([write_run(tmp_path / "saved_ema", record)]))
    assert "| test, flip TTA |" in card and "2 views (the image and its mirror image)" in card
    assert "**the weights in this repository are the EMA's**" in card

    plain = str(build_model_card([write_run(tmp_path / "plain", pretrain_record(7, 0.6))]))
    assert "TTA" not in plain and "EMA" not in plain


# -- the recipe -------------------------------------------------------------------------------------------------


@pytest.mark.slow  # trains through the recipe
def test_pretrain_recipe_with_ten_crop_tta_and_an_ema(tmp_path):
    from demo_runs import run_recipe

    out = tmp_path / "run"
    options = ("--tta", "ten_crop", "--ema_decay", "0.9", "--ema_warmup", "true", "--ema_save", "ema")
    run_recipe("pretrain.py", out, *options)
    results = json.loads((out / "all_results.json").read_text())
    for prefix in ("eval", "test"):
        for variant in ("", "_tta", "_ema"):
            assert {
                f"{prefix}{variant}_{m}" for m in ("accuracy", "macro_f1", "ece", "loss")
            } <= results.keys()
    assert math.isfinite(results["test_tta_loss"])
    checkpoints = sorted(out.glob("checkpoint-*"))
    assert checkpoints and (checkpoints[-1] / EMA_FILE).is_file()
    # --ema_save ema: the run's model is the checkpoint's average, not its trained weights.
    saved, ema = load_file(out / "model.safetensors"), load_file(checkpoints[-1] / EMA_FILE)
    for key, value in ema.items():
        torch.testing.assert_close(saved[key], value, rtol=0, atol=0, msg=key)
    card = (out / "README.md").read_text()
    assert "| test, ten-crop TTA |" in card and "the weights in this repository are the EMA's" in card
    record = json.loads((out / "run_info.json").read_text())
    assert record["config"]["tta"] == "ten_crop" and record["config"]["ema_decay"] == 0.9


# Under torchrun: an EMA kept while DDP trains (its checksum as every rank applies it); then ten-crop
# predictions of an untrained seeded model gathered over the 2 ranks (after training, each rank's BatchNorm
# statistics are its own, in plain evaluation too); rank 0 writes both to argv[1]. A Trainer that predicts
# before it trains trains without DDP, so the prediction has a trainer of its own.
TWO_RANKS = """
import json, sys
import torch.distributed as dist
sys.path.insert(0, "tests")
from test_tta_ema import examples, tiny_model, trainer_for
from emoreg_hf.ema import WeightEMA, weight_ema
trainer = trainer_for(tiny_model(), sys.argv[2], max_steps=3, learning_rate=0.05, save_strategy="no")
trainer.train_dataset = examples(16)
trainer.add_callback(WeightEMA(0.5))
trainer.train()
with weight_ema(trainer).applied(trainer.model) as model:
    checksums = [float(v.double().sum()) for v in model.state_dict().values() if v.is_floating_point()]
every_rank = [None] * dist.get_world_size()
dist.all_gather_object(every_rank, checksums)
predicting = trainer_for(tiny_model(), sys.argv[2])
with predicting.test_time_augmentation("ten_crop"):
    predictions = predicting.predict(examples(10)).predictions
if dist.get_rank() == 0:
    open(sys.argv[1], "w").write(json.dumps({"predictions": predictions.tolist(), "ema": every_rank}))
"""


@pytest.mark.slow  # starts 2 processes
def test_two_ranks_gather_tta_predictions_and_keep_the_same_ema(tmp_path):
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    script, out = tmp_path / "two_ranks.py", tmp_path / "out.json"
    script.write_text(TWO_RANKS)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*launcher, str(script), str(out), str(tmp_path / "run")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    written = json.loads(out.read_text())
    assert written["ema"][0] == written["ema"][1]  # the same average on both ranks, to the bit
    # Every image once (no padding duplicates), as one process predicts it.
    trainer = trainer_for(tiny_model(), tmp_path / "one")
    with trainer.test_time_augmentation("ten_crop"):
        alone = torch.as_tensor(trainer.predict(examples(10)).predictions)
    torch.testing.assert_close(torch.tensor(written["predictions"]), alone, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # trains through the recipe three times
def test_an_interrupted_recipe_resumes_its_ema(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from crash_at_step import CRASH_AT_STEP

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    common = [
        "--method", "baseline", "--max_train_samples", "128", "--max_eval_samples", "32",
        "--per_device_train_batch_size", "16", "--num_train_epochs", "2", "--eval_strategy", "no",
        "--dataloader_num_workers", "0", "--save_strategy", "steps", "--save_steps", "5", "--seed", "7",
        "--augmentation", "none", "--ema_decay", "0.8", "--ema_save", "ema",
    ]  # fmt: skip
    crash_at_5 = (
        "import runpy, sys\n"
        + CRASH_AT_STEP.format(step=5)
        + (
            'sys.argv = ["recipes/finetune.py", *sys.argv[1:]]\nrunpy.run_path("recipes/finetune.py", run_name="__main__")\n'
        )
    )

    def run(*args):
        return subprocess.run(
            [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
        )

    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run("recipes/finetune.py", *common, "--output_dir", straight).returncode == 0
    crash = run("-c", crash_at_5, *common, "--output_dir", resumed)
    assert "simulated crash at step 5" in crash.stderr and (resumed / "checkpoint-5" / EMA_FILE).is_file()
    result = run("recipes/finetune.py", *common, "--output_dir", resumed)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Weight EMA restored from" in result.stderr
    # --ema_save ema: the saved weights are the EMA; restored at step 5, it ends where the straight run's did.
    weights = [load_file(folder / "model.safetensors") for folder in (straight, resumed)]
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, msg=key)
    results = json.loads((resumed / "all_results.json").read_text())
    assert {"test_ema_accuracy", "eval_ema_accuracy", "test_accuracy"} <= results.keys()


def test_sharded_training_is_named_for_the_ema_refusal(monkeypatch, tmp_path):
    from emoreg_hf.training_options import sharded_training

    arguments = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to=[])
    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert sharded_training(arguments) is None
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    assert sharded_training(arguments) == "DeepSpeed"
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    assert sharded_training(arguments) == "FSDP"
