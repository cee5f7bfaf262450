"""The run wiring of both recipes: logging, subsampling, the input pipeline and the train → save → evaluate
sequence (with a full disk's message)."""

from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from .checkpoints import _checkpoint_step, _is_last_step, _run_loss_at, finish_from_last_checkpoint
from .ema import weight_ema
from .evaluation import label_baselines, scalars
from .trainer import EmoRegTrainer

logger = logging.getLogger(__name__)


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


# How a full disk reads in each writer's words: the OS's, safetensors' (Rust: "StorageFull", os error 28), and
# torch.save's zip writer, which loses errno (`PytorchStreamWriter failed writing file data/0: file write
# failed`, or `unexpected pos N vs M` once a write came up short).
DISK_FULL_MARKERS = (
    "No space left on device",
    "StorageFull",
    "os error 28",
    "PytorchStreamWriter failed writing file",
    "unexpected pos",
)


def _disk_full(error: BaseException) -> bool:
    """torch.save and safetensors report a full disk in their own words; OSError says ENOSPC."""
    import errno

    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return any(marker in str(error) for marker in DISK_FULL_MARKERS)


def _stop_request(trainer):
    from .callbacks import CheckpointOnStopRequest

    return next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, CheckpointOnStopRequest))


def _streamed_counts(trainer: EmoRegTrainer, train) -> dict | None:
    """Per-source counts of a streamed training split over every rank (None for a map-style split). A run
    that stopped short of `max_steps` because its stream gave no rows is an error, not a finished run."""
    if not hasattr(train, "tally"):
        return None
    counts = train.tally(trainer.accelerator, trained=trainer.rows_per_source)  # every rank takes part
    if trainer.state.global_step < trainer.args.max_steps:
        raise ValueError(
            f"training stopped at step {trainer.state.global_step} of --max_steps {trainer.args.max_steps}: the "
            f"streamed training split ran dry on a rank (rows per source: {counts}); the model was saved, "
            "but this run is not finished"
        )
    return counts


def train_and_evaluate(
    trainer: EmoRegTrainer,
    splits,
    *,
    checkpoint: str | None,
    label_names,
    extra_results: dict | None = None,
    tta: str = "none",
    ema_save: str = "raw",
) -> tuple[dict, dict[str, str]]:
    """Train (resuming from `checkpoint`), save the model, evaluate on validation and, if present, test.
    `extra_results` (facts about the data, e.g. `stage1_label_statistics`) join the results. Beside the
    plain evaluation, under their own keys (`averaged_results`): test-time augmentation (`tta`:
    `<split>_tta_*`) and, when the trainer keeps a `WeightEMA`, its weights (`<split>_ema_*`); `ema_save`:
    which weights are saved (`raw`: the trained ones, `ema`: the average).

    Returns the flat results dict written to `all_results.json` and the result files this run wrote (role
    -> name, for the run record); also writes `predictions_<split>.json` (labels, predictions, ρ) of the
    last evaluated split for the card's confusion matrix and ρ plots.
    """
    import json

    from safetensors import SafetensorError

    stash = _run_loss_at(checkpoint)
    trainer.loss_before_resume = stash["loss_sum"] if stash else 0.0
    ema = weight_ema(trainer)
    if ema is not None:
        ema.resume_from = checkpoint  # a resumed run goes on with the checkpoint's average
    try:
        # A checkpoint at the last step is finished without training; a sharded one (FSDP's DCP files,
        # DeepSpeed's states) is loaded only by Trainer inside train(), which then trains no more than a step.
        if (
            checkpoint is not None
            and not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled)
            and _is_last_step(checkpoint)
        ):
            train_metrics = finish_from_last_checkpoint(trainer, checkpoint, stash)
            if ema is not None:
                ema.attach(trainer.model, checkpoint)
        else:
            train_metrics = trainer.train(resume_from_checkpoint=checkpoint).metrics
            _stop_request(trainer).raise_if_stopped(trainer.args.output_dir)  # pre-empted: checkpoint saved
        if trainer.is_fsdp_enabled:  # sharded checkpoints or not, the final model is one model.safetensors
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
        saving_ema = ema is not None and ema_save == "ema"
        with ema.applied(trainer.model) if saving_ema else contextlib.nullcontext():
            trainer.save_model()
        trainer.save_state()
    except (OSError, RuntimeError, SafetensorError) as error:
        if not _disk_full(error):
            raise
        raise SystemExit(
            f"No space left on the device of {os.path.abspath(trainer.args.output_dir)} while saving "
            f"({type(error).__name__}: {str(error).splitlines()[0][:200]}). The last complete checkpoint is "
            "kept, and one cut short is never resumed: free some space (or lower --save_total_limit) and run "
            "the same command again to resume."
        ) from None
    results = dict(train_metrics)
    streamed = _streamed_counts(trainer, splits["train"])
    if checkpoint is not None:  # Trainer's train_loss is the mean over the steps of this process only
        start = stash["global_step"] if stash else None
        steps = trainer.state.global_step - (start or 0)
        if stash and trainer.state.global_step > 0:
            total = stash["loss_sum"] + results.get("train_loss", 0.0) * steps
            results["train_loss"] = total / trainer.state.global_step
        else:  # a checkpoint from elsewhere: say which steps the mean covers
            results["train_loss_from_step"] = _checkpoint_step(checkpoint)
    results["epoch"] = round(float(trainer.state.epoch or 0.0), 4)  # Trainer 5's train metrics carry none
    results["train_samples"] = (
        len(splits["train"]) if streamed is None else sum(c["rows"] for c in streamed.values())
    )
    trainer.log_metrics("train", scalars(train_metrics))
    trainer.save_metrics("train", train_metrics)

    predictions = {"validation": trainer.predict(splits["validation"], metric_key_prefix="eval")}
    if "test" in splits:
        predictions["test"] = trainer.predict(splits["test"], metric_key_prefix="test")
    for split, prediction in predictions.items():
        prefix = "test" if split == "test" else "eval"
        outputs = prediction.predictions
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        prediction.metrics.update(
            label_baselines(splits["train"], splits[split], np.argmax(logits, -1), prefix)
        )
        trainer.log_metrics(prefix, scalars(prediction.metrics))
        trainer.save_metrics(prefix, prediction.metrics)
        results.update(prediction.metrics)
    evaluated = list(predictions)
    if tta != "none":
        with trainer.test_time_augmentation(tta):
            results.update(averaged_results(trainer, splits, evaluated, "tta"))
    if ema is not None:
        with ema.applied(trainer.model):
            results.update(averaged_results(trainer, splits, evaluated, "ema"))
    results.update(extra_results or {})
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
    files = {
        "results": "all_results.json",
        "train_results": "train_results.json",
        "trainer_state": "trainer_state.json",
        "predictions": f"predictions_{final_split}.json",
    }
    files.update(
        {
            f"{prefix}_results": f"{prefix}_results.json"
            for prefix in ("eval", "test")
            if any(k.startswith(f"{prefix}_") for k in results)
        }
    )
    return results, files


def averaged_results(trainer: EmoRegTrainer, splits, evaluated: list[str], variant: str) -> dict:
    """The evaluation of each split again, as the trainer predicts now (test-time augmentation, or the EMA's
    weights), under the keys `<eval|test>_<variant>_*`, so the plain results stay as they were."""
    results = {}
    for split in evaluated:
        prefix = f"{'test' if split == 'test' else 'eval'}_{variant}"
        metrics = trainer.predict(splits[split], metric_key_prefix=prefix).metrics
        trainer.log_metrics(prefix, scalars(metrics))
        results.update(metrics)
    return results


def input_pipeline(splits, model_geometry: dict, data_args, num_classes: int):
    """Loader transforms (uint8 at the working size), the collator, the saved image processor and the
    device-side finisher that matches it (docs/architecture.md, input path)."""
    import datasets

    from .data import Collator, DeviceFinisher, LoaderTransform, build_image_processor, infer_working_size
    from .data.specs import draws_targets
    from .data.streaming import StreamedTrainSplit, source_names

    size = model_geometry["size"]
    working_size = infer_working_size(splits["train"], max(size), on_bad_image=data_args.on_bad_image)
    color = model_geometry.get("color_mode", "rgb")
    train_transform = LoaderTransform(working_size, data_args.augmentation, train=True, color_mode=color)
    eval_transform = LoaderTransform(working_size, "none", train=False, color_mode=color)
    prepared = {
        name: split.with_transform(train_transform if name == "train" else eval_transform)
        for name, split in splits.items()
        if not isinstance(split, datasets.IterableDataset)
    }
    if "train" not in prepared:  # streamed: decoded, checked and counted by the loader, per rank
        prepared["train"] = StreamedTrainSplit(
            splits["train"],
            train_transform,
            sources=source_names(data_args),
            on_bad_image=data_args.on_bad_image,
        )
    collator = Collator(
        num_classes=num_classes,
        mixup_alpha=data_args.mixup_alpha,
        cutmix_alpha=data_args.cutmix_alpha,
        draw_targets=draws_targets(getattr(data_args, "affective_sources", None)),
    )
    processor = build_image_processor(size, model_geometry["mean"], model_geometry["std"])
    logger.info(
        "Input path: loader uint8 at %d px (%s) -> device resize to %s + normalise", working_size, color, size
    )
    return prepared, collator, processor, DeviceFinisher.from_image_processor(processor)
