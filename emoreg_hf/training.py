"""Trainer wiring: device-side input finishing, the loss, EmoReg's optimizer groups, metrics, regulation
statistics, and resume rules."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import EvalPrediction, Trainer
from transformers.trainer_utils import get_last_checkpoint

logger = logging.getLogger(__name__)


class EmoRegTrainer(Trainer):
    """`Trainer` whose batches arrive as uint8 at the loader's working size.

    `finisher` (resize to the model's input + normalise) runs on the device as the first step of every
    training and evaluation step, so the host never builds float full-size tensors. The loss is
    EmoReg's own (DESIGN §1) or, for a plain classifier, cross-entropy that also takes mixup's soft targets.
    During training it keeps running regulation statistics and logs them with the loss.
    """

    def __init__(self, *args, finisher: Callable[[torch.Tensor], torch.Tensor] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.finisher = finisher
        self.model_accepts_loss_kwargs = False  # losses are per-batch means
        self._training_sums: dict[str, torch.Tensor] = {}

    def _get_dataloader(self, *args, **kwargs):
        """Evaluation batches are never mixed: mixup/cutmix belong to training only."""
        collator = self.data_collator
        if kwargs.get("is_training") or not getattr(collator, "mixes", False):
            return super()._get_dataloader(*args, **kwargs)
        self.data_collator = collator.without_mixing()
        try:
            return super()._get_dataloader(*args, **kwargs)
        finally:
            self.data_collator = collator

    def _prepare_inputs(self, inputs):
        inputs = super()._prepare_inputs(inputs)
        if self.finisher is not None and inputs.get("pixel_values") is not None:
            pixels = self.finisher(inputs["pixel_values"])
            inputs["pixel_values"] = (
                pixels.to(self.model.dtype) if self.model.dtype.is_floating_point else pixels
            )
        return inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        is_emoreg = hasattr(self.accelerator.unwrap_model(model), "optimizer_param_groups")
        if is_emoreg:
            outputs = model(**inputs)
            loss = outputs.loss
        else:
            outputs = model(pixel_values=inputs["pixel_values"])
            loss = None
            if labels is not None:
                smoothing = self.args.label_smoothing_factor
                loss = F.cross_entropy(outputs.logits.float(), labels, label_smoothing=smoothing)
            outputs["loss"] = loss
        if model.training and labels is not None:
            self._accumulate_training_stats(outputs, labels)
        return (loss, outputs) if return_outputs else loss

    def _accumulate_training_stats(self, outputs, labels: torch.Tensor) -> None:
        """Running means over the logging window: accuracy on the (augmented) training batches and, for
        EmoReg, ρ and the emotion entropy; logged with the loss, so they land in trainer_state.json."""
        targets = labels.argmax(-1) if labels.ndim > 1 else labels  # mixup/cutmix: the dominant class
        step = {
            "accuracy": (outputs.logits.detach().argmax(-1) == targets).float().mean(),
            "steps": torch.ones((), device=labels.device),
        }
        if getattr(outputs, "regulation", None) is not None:
            rho = outputs.regulation.detach().float()
            step["rho_mean"] = rho.mean()
            step["rho_std"] = rho.std(unbiased=False)
            step["emotion_entropy"] = _entropy(outputs.emotion_probs.detach().float()).mean()
        for key, value in step.items():
            self._training_sums[key] = self._training_sums.get(key, 0) + value

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._training_sums:
            keys = sorted(self._training_sums)
            sums = torch.stack([torch.as_tensor(self._training_sums[k]).float() for k in keys])
            sums = self.accelerator.reduce(sums, reduction="sum")
            steps = sums[keys.index("steps")]
            for key, value in zip(keys, sums):
                if key != "steps":
                    logs[key] = round((value / steps).item(), 4)
            self._training_sums = {}
        super().log(logs, start_time)

    def create_optimizer(self, model=None):
        """EmoReg trains its affective pathway (when not frozen) at `learning_rate * affect_lr_scale`."""
        opt_model = self.accelerator.unwrap_model(self.model if model is None else model)
        if self.optimizer is None and hasattr(opt_model, "optimizer_param_groups"):
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            groups = opt_model.optimizer_param_groups(self.args.learning_rate, self.args.weight_decay)
            optimizer_kwargs.pop("lr", None)
            self.optimizer = optimizer_cls(groups, lr=self.args.learning_rate, **optimizer_kwargs)
            return self.optimizer
        return super().create_optimizer(model)


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def keep_logits_for_metrics(outputs, labels):
    """Keep only what the metrics read (regulated logits, ρ, e(x)) from each evaluation batch."""
    if isinstance(outputs, tuple):
        return tuple(t.float() for t in outputs[:3])
    return outputs.float()


def regulation_statistics(
    regulation: np.ndarray,
    emotion_probs: np.ndarray,
    labels: np.ndarray,
    label_names: Sequence[str],
    emotion_names: Sequence[str],
) -> dict[str, float]:
    """Mean/std of ρ, mean emotion entropy, ρ per target class, and each emotion's share of e(x)."""
    probs = torch.from_numpy(np.asarray(emotion_probs, dtype=np.float64))
    stats = {
        "rho_mean": float(np.mean(regulation)),
        "rho_std": float(np.std(regulation)),
        "emotion_entropy": float(_entropy(probs).mean()),
    }
    for index, name in enumerate(label_names):
        members = labels == index
        if members.any():
            stats[f"rho_class/{name}"] = float(regulation[members].mean())
    shares = np.asarray(emotion_probs).mean(axis=0)
    for name, share in zip(emotion_names, shares):
        stats[f"emotion_share/{name}"] = float(share)
    return stats


def build_compute_metrics(
    label_names: Sequence[str], emotion_names: Sequence[str] | None = None
) -> Callable[[EvalPrediction], dict]:
    """`compute_metrics` for Trainer: classification metrics, plus regulation statistics for EmoReg."""
    from .metrics import compute_classification_metrics

    def compute_metrics(prediction: EvalPrediction) -> dict:
        outputs, labels = prediction.predictions, np.asarray(prediction.label_ids)
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        metrics = compute_classification_metrics(np.asarray(logits), labels)
        if isinstance(outputs, tuple) and len(outputs) >= 3 and emotion_names:
            metrics.update(regulation_statistics(outputs[1], outputs[2], labels, label_names, emotion_names))
        return metrics

    return compute_metrics


def resume_checkpoint(output_dir: str, *, resume_from_checkpoint: str | None, overwrite: bool) -> str | None:
    """The checkpoint to resume from, or None for a fresh run.

    An explicit `resume_from_checkpoint` path wins; otherwise the last `checkpoint-*` in `output_dir` is
    resumed. A non-empty `output_dir` without one is refused (it may hold a finished model) unless `overwrite`.
    """
    if resume_from_checkpoint and str(resume_from_checkpoint).lower() != "true":
        if not os.path.isdir(resume_from_checkpoint):
            raise ValueError(f"resume_from_checkpoint={resume_from_checkpoint!r} is not a checkpoint folder")
        return resume_from_checkpoint
    if overwrite or not os.path.isdir(output_dir):
        return None
    last = get_last_checkpoint(output_dir)
    if last is not None:
        logger.info("Resuming from %s", last)
        return last
    if os.listdir(output_dir):
        raise ValueError(
            f"output_dir {output_dir!r} is not empty and holds no checkpoint to resume from; "
            "pass --overwrite_output_dir true to replace its contents, or choose another output_dir"
        )
    return None


# -- recipe plumbing ------------------------------------------------------------------------------------


def setup_logging(training_args) -> None:
    """Log level per process (main process talkative, others quiet), as in transformers' examples."""
    import datasets
    import transformers

    level = training_args.get_process_log_level()
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level)
    for lib in (datasets.utils.logging, transformers.utils.logging):
        lib.set_verbosity(level)
    # Our own progress messages (data report, input path, resume) are INFO on the main process by default.
    ours = logging.INFO if training_args.should_log and training_args.log_level == "passive" else level
    logging.getLogger("emoreg_hf").setLevel(ours)


def prepare_output_dir(training_args, *, overwrite: bool) -> str | None:
    """Decide resume vs fresh start before any work; with `overwrite`, stale checkpoints are removed so
    they cannot be resumed later by mistake."""
    import shutil

    checkpoint = resume_checkpoint(
        training_args.output_dir,
        resume_from_checkpoint=training_args.resume_from_checkpoint,
        overwrite=overwrite,
    )
    if overwrite and os.path.isdir(training_args.output_dir) and training_args.process_index == 0:
        for name in os.listdir(training_args.output_dir):
            if name.startswith("checkpoint-"):
                shutil.rmtree(os.path.join(training_args.output_dir, name))
    return checkpoint


def adapt_training_args(training_args) -> bool:
    """Settings every recipe needs; returns whether to push at the end (the recipe pushes the finished,
    carded folder itself rather than letting Trainer push checkpoints)."""
    push, training_args.push_to_hub = training_args.push_to_hub, False
    training_args.remove_unused_columns = False  # the transform reads `image`, which the model does not take
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # nothing to pin for
    return push


def cap(split, n: int | None, seed: int = 0):
    """A seeded, class-stratified subsample of `n` rows (quick runs, small studies); the whole split when
    `n` is None. Stratified because real folders are sorted by class: the first `n` rows would be one class."""
    if n is None:
        return split
    if not hasattr(split, "__len__"):  # a streaming split: the first n of its (shuffled) stream
        return split.take(n)
    if len(split) <= n:
        return split
    try:
        return split.train_test_split(train_size=n, stratify_by_column="label", seed=seed)["train"]
    except ValueError:  # too few rows per class to stratify: fall back to a seeded shuffle
        return split.shuffle(seed=seed).select(range(n))


def command_line() -> str:
    """How this run was started, for the model card's reproduce section."""
    import shlex
    import sys

    launcher = (
        "accelerate launch"
        if "ACCELERATE_MIXED_PRECISION" in os.environ or "ACCELERATE_USE_CPU" in os.environ
        else "python"
    )
    return " ".join([launcher, *map(shlex.quote, sys.argv)])


def training_summary(training_args, image_size) -> dict:
    world = training_args.world_size
    return {
        "learning_rate": training_args.learning_rate,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "world_size": world,
        "global_batch_size": training_args.per_device_train_batch_size
        * world
        * training_args.gradient_accumulation_steps,
        "weight_decay": training_args.weight_decay,
        "warmup_ratio": getattr(training_args, "warmup_ratio", None),
        "warmup_steps": training_args.warmup_steps,
        "lr_scheduler_type": str(
            getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
        ),
        "optim": str(getattr(training_args.optim, "value", training_args.optim)),
        "seed": training_args.seed,
        "bf16": training_args.bf16,
        "fp16": training_args.fp16,
        "image_size": image_size,
    }


def train_and_evaluate(trainer: EmoRegTrainer, splits, *, checkpoint: str | None, label_names) -> dict:
    """Train (resuming from `checkpoint`), save the model, evaluate on validation and, if present, test.

    Returns the flat results dict written to `all_results.json`; also writes `predictions_<split>.json`
    (labels, predictions, ρ) of the last evaluated split for the card's confusion matrix and ρ plots.
    """
    import json

    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model()
    trainer.save_state()
    results = dict(train_result.metrics)
    results["train_samples"] = len(splits["train"])
    trainer.log_metrics("train", train_result.metrics)
    trainer.save_metrics("train", train_result.metrics)

    predictions = {"validation": trainer.predict(splits["validation"], metric_key_prefix="eval")}
    if "test" in splits:
        predictions["test"] = trainer.predict(splits["test"], metric_key_prefix="test")
    for split, prediction in predictions.items():
        prefix = "test" if split == "test" else "eval"
        trainer.log_metrics(prefix, prediction.metrics)
        trainer.save_metrics(prefix, prediction.metrics)
        results.update(prediction.metrics)
    final_split = "test" if "test" in predictions else "validation"
    prediction = predictions[final_split]
    if trainer.is_world_process_zero():
        outputs = prediction.predictions
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        regulation = outputs[1].tolist() if isinstance(outputs, tuple) and len(outputs) >= 3 else None
        payload = {
            "split": final_split,
            "label_names": list(label_names),
            "labels": np.asarray(prediction.label_ids).astype(int).tolist(),
            "predictions": np.asarray(logits).argmax(-1).astype(int).tolist(),
            "regulation": [round(float(r), 5) for r in regulation] if regulation is not None else None,
        }
        with open(os.path.join(trainer.args.output_dir, f"predictions_{final_split}.json"), "w") as f:
            json.dump(payload, f)
        trainer.save_metrics("all", results, combined=False)
    return results


def finish_run(
    training_args,
    script_args,
    *,
    config_path: str | None,
    image_size,
    results: dict,
    push: bool,
    headline: str,
    **info,
) -> None:
    """Main process, after training: `run_info.json` (what the card and the ablation runner read: the
    command, the config, the training summary, plus the stage's own `info`), the model card, the push if
    asked, and one summary line with the `headline` metric."""
    import json

    from . import hub

    output_dir = training_args.output_dir
    run_info = {
        **info,
        "command": command_line(),
        "config_file": config_path,
        "config": vars(script_args),
        "training": training_summary(training_args, image_size),
    }
    with open(os.path.join(output_dir, "run_info.json"), "w") as f:
        json.dump(run_info, f, indent=2, default=str)
    hub.write_model_card(output_dir, repo_id=training_args.hub_model_id)
    if push:
        hub.push_from_training_args(output_dir, training_args)
    print(f"{headline}={results.get(headline, float('nan')):.4f} -> {os.path.abspath(output_dir)}")


# -- model builders -------------------------------------------------------------------------------------

DEFAULT_MEAN = [0.5, 0.5, 0.5]
DEFAULT_STD = [0.5, 0.5, 0.5]


def _labels(names) -> dict:
    names = list(names)
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def config_from_dict(model_config: dict, names, image_size: int | None):
    """`AutoConfig.for_model` from a YAML dict, labelled, with `image_size` where the family has one."""
    from transformers import AutoConfig

    fields = dict(model_config)
    model_type = fields.pop("model_type")
    config = AutoConfig.for_model(model_type, **fields, **_labels(names))
    if image_size is not None and hasattr(config, "image_size") and "image_size" not in fields:
        config.image_size = image_size
    return config


def geometry(name_or_path: str | None, image_size: int | None) -> dict:
    """Input size / mean / std of a checkpoint's processor; defaults for a model built from scratch."""
    from .modeling_emoreg import _processor_geometry

    found = _processor_geometry(name_or_path) if name_or_path else {}
    size = found.get("size") or ([image_size, image_size] if image_size else None)
    if size is None:
        raise ValueError(
            f"cannot tell the input size of {name_or_path or 'a model built from scratch'}: "
            "it has no image processor; pass --image_size"
        )
    return {"size": size, "mean": found.get("mean", DEFAULT_MEAN), "std": found.get("std", DEFAULT_STD)}


def build_pretrain_model(args, emotion_names):
    """Stage 1: a plain AutoModelForImageClassification with one output per emotion."""
    from transformers import AutoModelForImageClassification

    if args.model_name_or_path:
        model = AutoModelForImageClassification.from_pretrained(
            args.model_name_or_path, ignore_mismatched_sizes=True, **_labels(emotion_names)
        )
        model_geometry = geometry(args.model_name_or_path, args.image_size)
    else:
        config = config_from_dict(args.model_config, emotion_names, args.image_size)
        model, model_geometry = (
            AutoModelForImageClassification.from_config(config),
            geometry(None, args.image_size),
        )
    # Provenance that travels inside config.json, so stage 2 (and its card) knows what the experience means.
    model.config.emotion_taxonomy = args.taxonomy
    model.config.shuffled_emotion_labels = bool(args.shuffle_labels)
    return model, model_geometry


def build_finetune_model(args, label_names):
    """Stage 2 for `method`: EmoReg, the task pathway alone (baseline) or the affective backbone (transfer)."""
    from transformers import AutoModelForImageClassification

    from .configs import EMOREG_OPTIONS
    from .modeling_emoreg import EmoRegForImageClassification

    labels = _labels(label_names)
    if args.method != "baseline" and not (
        os.path.isdir(args.affect_model_name_or_path) or args.affect_model_name_or_path.count("/") == 1
    ):
        raise FileNotFoundError(
            f"affect_model_name_or_path {args.affect_model_name_or_path!r} is neither a folder nor a Hub id; "
            "run stage 1 first (accelerate launch recipes/pretrain.py) or point it at a stage-1 checkpoint"
        )
    if args.method == "transfer":
        model = AutoModelForImageClassification.from_pretrained(
            args.affect_model_name_or_path, ignore_mismatched_sizes=True, **labels
        )
        if args.affect_init == "random":
            model = AutoModelForImageClassification.from_config(model.config)
        return model, geometry(args.affect_model_name_or_path, args.image_size)

    task_geometry = geometry(args.task_model_name_or_path, args.image_size)
    if args.method == "baseline":
        if args.task_model_name_or_path:
            model = AutoModelForImageClassification.from_pretrained(
                args.task_model_name_or_path, ignore_mismatched_sizes=True, **labels
            )
        else:
            model = AutoModelForImageClassification.from_config(
                config_from_dict(args.task_model_config, label_names, args.image_size)
            )
        return model, task_geometry

    task_config = None
    if args.task_model_config is not None:
        task_config = config_from_dict(args.task_model_config, label_names, args.image_size)
    model = EmoRegForImageClassification.from_backbones(
        args.task_model_name_or_path,
        args.affect_model_name_or_path,
        task_config=task_config,
        task_image_size=task_geometry["size"],
        task_image_mean=task_geometry["mean"],
        task_image_std=task_geometry["std"],
        **{option: getattr(args, option) for option in EMOREG_OPTIONS},
        **labels,
    )
    if args.affect_init == "random":
        model.reset_affective_pathway()
    return model, task_geometry


def input_pipeline(splits, model_geometry: dict, data_args, num_classes: int):
    """Loader transforms (uint8 at the working size), the collator, the saved image processor and the
    device-side finisher that matches it (DESIGN §4, input path)."""
    from .data import Collator, DeviceFinisher, LoaderTransform, build_image_processor, infer_working_size

    size = model_geometry["size"]
    working_size = infer_working_size(splits["train"], max(size))
    train_transform = LoaderTransform(working_size, data_args.augmentation, train=True)
    eval_transform = LoaderTransform(working_size, "none", train=False)
    prepared = {
        name: split.with_transform(train_transform if name == "train" else eval_transform)
        for name, split in splits.items()
    }
    collator = Collator(
        num_classes=num_classes, mixup_alpha=data_args.mixup_alpha, cutmix_alpha=data_args.cutmix_alpha
    )
    processor = build_image_processor(size, model_geometry["mean"], model_geometry["std"])
    logger.info("Input path: loader uint8 at %d px -> device resize to %s + normalise", working_size, size)
    return prepared, collator, processor, DeviceFinisher.from_image_processor(processor)
