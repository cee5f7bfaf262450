"""EmoReg inside Trainer: labels are found in its evaluation batches, and a timm pathway's activation checkpointing
is seen by Trainer (DDP's find_unused_parameters) and can always be turned off; each on tiny configs."""

import pytest
import torch
from tiny_models import CIFAR10, EKMAN7, resnet_config, vit_config
from transformers import AutoModelForImageClassification, TrainingArguments
from transformers.utils import find_labels

from emoreg_hf import EmoRegConfig, EmoRegForImageClassification
from emoreg_hf.data import DeviceFinisher
from emoreg_hf.trainer import EmoRegTrainer

PIXELS = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
LABELS = torch.tensor([0, 3, 7, 9])


def make_model(**options) -> EmoRegForImageClassification:
    torch.manual_seed(0)
    config = EmoRegConfig(
        task_config=vit_config(CIFAR10),
        affect_config=resnet_config(EKMAN7),
        task_image_size=[32, 32],
        **options,
    )
    return EmoRegForImageClassification(config)


def trainer(model, tmp_path, channels_last: bool = False, **args) -> EmoRegTrainer:
    examples = [{"pixel_values": PIXELS[i], "labels": int(LABELS[i])} for i in range(4)]
    arguments = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, per_device_eval_batch_size=2,
        report_to=[], use_cpu=True, remove_unused_columns=False, save_strategy="no", **{"max_steps": 1, **args},
    )  # fmt: skip
    return EmoRegTrainer(
        model=model,
        args=arguments,
        train_dataset=examples,
        eval_dataset=examples,
        channels_last=channels_last,
    )


def test_trainer_finds_labels_in_emoreg_evaluation_batches(tmp_path):
    """`label_smoothing` in forward's signature made Trainer take it for a label column (`find_labels` keeps
    every parameter whose name holds "label"), so no evaluation batch "had labels": no eval loss, no label
    ids, no metrics, and the recipes crashed writing predictions (found at ViT-B/16 and ConvNeXt-T scale)."""
    assert find_labels(EmoRegForImageClassification) == ["labels"]
    prediction = trainer(make_model(), tmp_path).predict(
        [{"pixel_values": PIXELS[i], "labels": int(LABELS[i])} for i in range(4)]
    )
    assert prediction.label_ids is not None and prediction.label_ids.tolist() == LABELS.tolist()
    assert torch.isfinite(torch.tensor(prediction.metrics["test_loss"]))
    # label smoothing still reaches every term of the loss as a keyword
    model = make_model().eval()
    with torch.no_grad():
        plain, smoothed = model(PIXELS, labels=LABELS), model(PIXELS, labels=LABELS, label_smoothing=0.3)
    assert not torch.isclose(plain.loss, smoothed.loss)


def test_checkpointing_of_a_timm_pathway_is_reported_and_disabling_is_never_refused():
    """timm flags its modules `grad_checkpointing`, so transformers' `is_activation_checkpointing` missed a
    checkpointed timm task pathway (the ConvNeXt-T recipe) and Trainer chose DDP's `find_unused_parameters`
    as for an unchecked model; and `activation_checkpointing_disable()` raised for a family without
    checkpointing (the ResNet-50 recipe) although there was nothing to turn off."""
    from tiny_models import family_configs

    timm_task = family_configs(CIFAR10)["timm_vit"]
    model = EmoRegForImageClassification(
        EmoRegConfig(task_config=timm_task, affect_config=vit_config(EKMAN7), task_image_size=[32, 32])
    )
    assert not model.is_activation_checkpointing
    model.activation_checkpointing_enable()
    assert model.task_model.timm_model.grad_checkpointing and model.is_activation_checkpointing
    assert not model.affect_model.is_activation_checkpointing  # frozen: nothing to recompute
    loss = model.train()(PIXELS, labels=LABELS).loss
    loss.backward()
    assert torch.isfinite(loss)
    model.activation_checkpointing_disable()
    assert not model.is_activation_checkpointing

    resnet = EmoRegForImageClassification(
        EmoRegConfig(task_config=resnet_config(CIFAR10), affect_config=resnet_config(EKMAN7))
    )
    resnet.activation_checkpointing_disable()  # no error: nothing was on
    assert not resnet.is_activation_checkpointing


class CountingFinisher:
    """A finisher that records each batch it finishes (dtype, device) and checks it gets uint8 only."""

    def __init__(self):
        self.seen = []

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        self.seen.append((pixels.dtype, pixels.device.type, pixels.shape[0]))
        return DeviceFinisher(32, (0.5,) * 3, (0.25,) * 3)(pixels)


@pytest.mark.parametrize("kind", ["emoreg", "baseline"])
def test_each_batch_is_finished_once_on_the_device_through_public_hooks(tmp_path, kind):
    """The finishing runs in `training_step` / `prediction_step` (public hooks, no `_prepare_inputs`): once per
    micro-batch with gradient accumulation, and once per evaluation and predict batch, for EmoReg and a
    plain classifier; the loader's own batch is left uint8."""
    model = (
        make_model()
        if kind == "emoreg"
        else AutoModelForImageClassification.from_config(resnet_config(CIFAR10))
    )
    run = trainer(model, tmp_path, max_steps=2, gradient_accumulation_steps=2)
    uint8 = [{"pixel_values": (PIXELS[i] * 40 + 128).clamp(0, 255).to(torch.uint8), "labels": int(LABELS[i])}
             for i in range(4)]  # fmt: skip
    run.train_dataset = run.eval_dataset = uint8
    run.finisher = CountingFinisher()
    run.train()
    assert run.state.global_step == 2
    assert len(run.finisher.seen) == 4  # 2 steps x 2 micro-batches
    metrics = run.evaluate()
    assert len(run.finisher.seen) == 6 and torch.isfinite(torch.tensor(metrics["eval_loss"]))
    prediction = run.predict(uint8)
    assert len(run.finisher.seen) == 8 and prediction.label_ids.tolist() == LABELS.tolist()
    assert {(dtype, device) for dtype, device, _ in run.finisher.seen} == {
        (torch.uint8, run.args.device.type)
    }
    batch = {"pixel_values": uint8[0]["pixel_values"][None], "labels": torch.tensor([0])}
    finished = run.finish_batch(batch)
    assert finished["pixel_values"].dtype == torch.float32 and batch["pixel_values"].dtype == torch.uint8
    with pytest.raises(TypeError, match="expects uint8"):
        run.finish_batch(finished)  # a batch is never finished twice


@pytest.mark.parametrize("kind", ["emoreg", "baseline"])
def test_channels_last_reaches_the_weights_and_every_batch_and_the_run_trains(tmp_path, kind):
    """`--channels_last true`: the model's 4-D weights are NHWC from the start and stay so through the
    optimizer's steps, every batch the model sees (training and evaluation) is NHWC, and the saved weights
    load back equal; off, nothing changes format."""
    from transformers import AutoModelForImageClassification as Auto

    def convs(module):
        return [p for p in module.parameters() if p.ndim == 4]

    def is_nhwc(tensor):  # a 1x1 map is both formats: only tensors with a real spatial layout tell
        return tensor.is_contiguous(memory_format=torch.channels_last) and not tensor.is_contiguous()

    model = make_model() if kind == "emoreg" else Auto.from_config(resnet_config(CIFAR10))
    run = trainer(model, tmp_path, channels_last=True, max_steps=2)
    uint8 = [{"pixel_values": (PIXELS[i] * 40 + 128).clamp(0, 255).to(torch.uint8), "labels": int(LABELS[i])}
             for i in range(4)]  # fmt: skip
    run.train_dataset = run.eval_dataset = uint8
    run.finisher = DeviceFinisher(32, (0.5,) * 3, (0.25,) * 3)
    seen = []
    model.register_forward_pre_hook(lambda m, a, kw: seen.append(is_nhwc(kw.get("pixel_values", a and a[0]))),
                                    with_kwargs=True)  # fmt: skip
    assert convs(model) and all(is_nhwc(p) for p in convs(model) if p.shape[-1] > 1)
    before = [p.detach().clone() for p in convs(model)]
    run.train()
    assert run.state.global_step == 2 and any(not torch.equal(a, b) for a, b in zip(before, convs(model)))
    assert all(is_nhwc(p) for p in convs(model) if p.shape[-1] > 1)
    run.evaluate()
    assert seen and all(seen)  # 2 training batches, 2 evaluation batches
    run.save_model(str(tmp_path / "saved"))
    loaded = type(model).from_pretrained(tmp_path / "saved")
    assert all(torch.equal(a, b) for a, b in zip(convs(loaded), convs(model)))

    plain = trainer(Auto.from_config(resnet_config(CIFAR10)), tmp_path / "plain")
    finished = plain.finish_batch({"pixel_values": uint8[0]["pixel_values"][None].repeat(2, 1, 1, 1)})
    assert not plain.channels_last and finished["pixel_values"] is not None
    assert not any(is_nhwc(p) for p in convs(plain.model))
