"""EmoReg inside Trainer: labels are found in its evaluation batches, and a timm pathway's activation checkpointing
is seen by Trainer (DDP's find_unused_parameters) and can always be turned off; each on tiny configs."""

import torch
from tiny_models import CIFAR10, EKMAN7, resnet_config, vit_config
from transformers import TrainingArguments
from transformers.utils import find_labels

from emoreg_hf import EmoRegConfig, EmoRegForImageClassification
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


def trainer(model, tmp_path, **args) -> EmoRegTrainer:
    examples = [{"pixel_values": PIXELS[i], "labels": int(LABELS[i])} for i in range(4)]
    arguments = TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=2, per_device_eval_batch_size=2, max_steps=1,
        report_to=[], use_cpu=True, remove_unused_columns=False, save_strategy="no", **args,
    )  # fmt: skip
    return EmoRegTrainer(model=model, args=arguments, train_dataset=examples, eval_dataset=examples)


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
