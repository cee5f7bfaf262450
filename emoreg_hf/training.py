"""Trainer wiring: device-side input finishing, the loss, EmoReg's optimizer groups, metrics, regulation
statistics and the train → evaluate sequence of both recipes."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from transformers import EvalPrediction, Trainer, TrainerCallback
from transformers.trainer_callback import ExportableState

from .backbones import present_no_split_modules
from .checkpoints import _checkpoint_step, _is_last_step, _run_loss_at, finish_from_last_checkpoint

logger = logging.getLogger(__name__)


class EmoRegRunLoss(TrainerCallback, ExportableState):
    """The training loss summed over every step of the run, saved in each checkpoint's `trainer_state.json`
    (`stateful_callbacks`, under this class's name), so a resumed run can report the mean training loss over
    the whole run, not over the steps after the resume. The trainer adds each step's loss (`add`, as a
    device tensor: no host sync per step); `before` is the sum of the steps before a resumed checkpoint."""

    def __init__(self):
        self.before = 0.0
        self.global_step = 0
        self._sum: torch.Tensor | None = None

    def add(self, step_loss: torch.Tensor) -> None:
        step_loss = step_loss.detach().float()
        if torch.isfinite(
            step_loss
        ).all():  # as Trainer's logging_nan_inf_filter, a diverged step is left out
            self._sum = step_loss if self._sum is None else self._sum + step_loss

    @property
    def loss_sum(self) -> float:
        return self.before + (float(self._sum.item()) if self._sum is not None else 0.0)

    def on_step_end(self, args, state, control, **kwargs):
        self.global_step = state.global_step

    def state(self) -> dict:
        return {"args": {}, "attributes": {"loss_sum": self.loss_sum, "global_step": self.global_step}}


RUN_LOSS = EmoRegRunLoss.__name__  # its key in trainer_state.json's stateful_callbacks


class EmoRegTrainer(Trainer):
    """`Trainer` whose batches arrive as uint8 at the loader's working size.

    `finisher` (resize to the model's input + normalise) runs on the device as the first step of every
    training and evaluation step, so the host never builds float full-size tensors. The loss is
    EmoReg's own (docs/method.md) or, for a plain classifier, cross-entropy that also takes mixup's soft
    targets. During training it keeps running regulation statistics and logs them with the loss; the
    console and the trackers get scalars, while per-class ρ and emotion shares go to the results and, as
    histograms and figures, to TensorBoard (`callbacks.RegulationDetailsCallback`).
    """

    def __init__(
        self,
        *args,
        finisher: Callable[[torch.Tensor], torch.Tensor] | None = None,
        class_weights: torch.Tensor | None = None,
        train_sampler: torch.utils.data.Sampler | None = None,
        **kwargs,
    ):
        super().__init__(*args, **kwargs)
        # FSDP's transformer-based wrapping shards each `_no_split_modules` class and refuses one the model
        # lacks (transformers' timm wrapper lists one its classifier does not contain): keep those it has.
        self.model._no_split_modules = present_no_split_modules(self.model)
        self.finisher = finisher
        self.class_weights = class_weights  # per-class loss weights of training (`balance`), or None
        self.train_sampler = train_sampler  # e.g. `balance.ClassBalancedSampler`; None: Trainer's own
        self.model_accepts_loss_kwargs = False  # losses are per-batch means
        self._training_sums: dict[str, torch.Tensor] = {}
        self.run_loss = EmoRegRunLoss()
        self.add_callback(self.run_loss)
        from .callbacks import install_callbacks

        install_callbacks(self)

    @property
    def loss_before_resume(self) -> float:
        """The training loss summed over the steps before a resumed checkpoint (kept by `run_loss`)."""
        return self.run_loss.before

    @loss_before_resume.setter
    def loss_before_resume(self, value: float) -> None:
        self.run_loss.before = float(value)

    @contextlib.contextmanager
    def _unmixed(self):
        """Evaluation batches are never mixed: mixup/cutmix belong to training only."""
        collator = self.data_collator
        if not getattr(collator, "mixes", False):
            yield
            return
        self.data_collator = collator.without_mixing()
        try:
            yield
        finally:
            self.data_collator = collator

    def get_eval_dataloader(self, eval_dataset=None):
        with self._unmixed():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset):
        with self._unmixed():
            return super().get_test_dataloader(test_dataset)

    def _get_train_sampler(self, train_dataset=None):
        """The run's own training sampler when it has one (the override point TRL's trainers use too)."""
        if self.train_sampler is not None and (train_dataset is None or train_dataset is self.train_dataset):
            return self.train_sampler
        return super()._get_train_sampler(train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.run_loss.add(loss)  # the step's loss as Trainer sums it, for the whole-run mean after a resume
        return loss

    def get_train_dataloader(self):
        """A streamed training split is split by rank here, with `datasets.distributed.split_dataset_by_node`
        (data/streaming.py), so accelerate must not split it again: its loader is prepared as one process's
        (device placement, nothing sharded). Map-style splits take Trainer's own path."""
        from .data.streaming import KeepSources, StreamedTrainSplit

        if not isinstance(self.train_dataset, StreamedTrainSplit):
            return super().get_train_dataloader()
        from accelerate.data_loader import prepare_data_loader
        from torch.utils.data import DataLoader

        args = self.args
        stream = self.train_dataset.assign(args.process_index, args.world_size, args.dataloader_num_workers)
        workers = args.dataloader_num_workers
        self.rows_per_source = torch.zeros(len(stream.sources), dtype=torch.int64)
        loader = DataLoader(
            stream,
            batch_size=args.train_batch_size,
            collate_fn=KeepSources(self.data_collator),
            num_workers=workers,
            pin_memory=args.dataloader_pin_memory,
            persistent_workers=args.dataloader_persistent_workers if workers else False,
            prefetch_factor=args.dataloader_prefetch_factor if workers else None,
            multiprocessing_context=args.dataloader_multiprocessing_context if workers else None,
        )
        return prepare_data_loader(
            loader, self.accelerator.device, num_processes=1, process_index=0, dispatch_batches=False
        )

    def _prepare_inputs(self, inputs):
        inputs = super()._prepare_inputs(inputs)
        if self.finisher is not None and inputs.get("pixel_values") is not None:
            pixels = self.finisher(inputs["pixel_values"])
            inputs["pixel_values"] = (
                pixels.to(self.model.dtype) if self.model.dtype.is_floating_point else pixels
            )
        return inputs

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        sources = inputs.pop("source", None)  # a streamed split's rows: counted per source
        if sources is not None:
            counted = torch.bincount(sources, minlength=len(self.rows_per_source))
            self.rows_per_source = self.rows_per_source.to(counted.device) + counted
        labels = inputs.get("labels")
        is_emoreg = hasattr(self.accelerator.unwrap_model(model), "optimizer_param_groups")
        # Class weights shape the training objective only: evaluation losses stay plain cross-entropy, so
        # runs with and without them compare.
        weights = self.class_weights if model.training else None
        if weights is not None:
            weights = weights.to(self.accelerator.device)
        if is_emoreg:
            outputs = model(**inputs, label_smoothing=self.args.label_smoothing_factor, class_weights=weights)
            loss = outputs.loss
        else:
            outputs = model(pixel_values=inputs["pixel_values"])
            loss = None
            if labels is not None:
                smoothing = self.args.label_smoothing_factor
                loss = F.cross_entropy(
                    outputs.logits.float(), labels, weight=weights, label_smoothing=smoothing
                )
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
        super().log(scalars(logs), start_time)

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


def scalars(metrics: dict) -> dict:
    """The metrics a console line and a tracker's scalar plot show: per-class ρ (`rho_class/<class>`) and
    emotion shares (`emotion_share/<emotion>`) stay in the results, the card and the histograms."""
    return {k: v for k, v in metrics.items() if "/" not in k}


def _entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1)


def keep_logits_for_metrics(outputs, labels):
    """Keep only what the metrics read from each evaluation batch: the regulated logits and, for EmoReg, ρ,
    e(x) and the pooled features h_T, h_A (from which `affect_reliance` recomputes the output). EmoReg's
    outputs arrive as (logits, regulation, emotion_probs, logits_non_emotional, logits_emotional,
    task_features, affect_features)."""
    if isinstance(outputs, tuple):
        return tuple(t.float() for t in outputs[:3] + outputs[5:7])
    return outputs.float()


RELIANCE_PERMUTATIONS = 5  # averaged: one permutation of 10,000 images moves the accuracy by ~0.1 pp


@torch.no_grad()
def affect_reliance(
    model,
    task_features: np.ndarray,
    affect_features: np.ndarray,
    emotion_probs: np.ndarray,
    labels: np.ndarray,
    *,
    permutations: int = RELIANCE_PERMUTATIONS,
    seed: int = 0,
) -> dict[str, float]:
    """How much EmoReg's answers rely on the affective pathway: the accuracy drop when h_A and e(x) are
    permuted across the evaluated images (each image gets another image's feelings) and when they are
    replaced by their mean over the split (no image-specific feeling at all). ρ cannot say this: it weights
    the emotional response's logits, and that response also reads h_T. Drops are fractions, like accuracy,
    relative to the accuracy recomputed from the same features."""
    parameter = next(model.parameters())

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values), dtype=parameter.dtype, device=parameter.device)

    h_task, h_affect, emotion = tensor(task_features), tensor(affect_features), tensor(emotion_probs)
    targets = torch.as_tensor(np.asarray(labels), device=parameter.device)
    if targets.ndim > 1:
        targets = targets.argmax(-1)

    def accuracy(affect: torch.Tensor, feeling: torch.Tensor) -> float:
        logits = model.respond(h_task, affect, feeling).logits
        return float((logits.argmax(-1) == targets).float().mean())

    reference = accuracy(h_affect, emotion)
    generator = torch.Generator().manual_seed(seed)
    permuted = []
    for _ in range(permutations):
        order = torch.randperm(len(targets), generator=generator).to(parameter.device)
        permuted.append(accuracy(h_affect[order], emotion[order]))
    mean = accuracy(
        h_affect.mean(0, keepdim=True).expand_as(h_affect), emotion.mean(0, keepdim=True).expand_as(emotion)
    )
    return {
        "reliance_permuted": reference - float(np.mean(permuted)),
        "reliance_mean": reference - mean,
    }


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
    label_names: Sequence[str], emotion_names: Sequence[str] | None = None, model=None
) -> Callable[[EvalPrediction], dict]:
    """`compute_metrics` for Trainer: classification metrics, plus for EmoReg the regulation statistics and,
    given the `model`, its reliance on the affective pathway (`affect_reliance`)."""
    from .metrics import compute_classification_metrics

    def compute_metrics(prediction: EvalPrediction) -> dict:
        outputs, labels = prediction.predictions, np.asarray(prediction.label_ids)
        logits = outputs[0] if isinstance(outputs, tuple) else outputs
        metrics = compute_classification_metrics(np.asarray(logits), labels)
        if isinstance(outputs, tuple) and len(outputs) >= 3 and emotion_names:
            metrics.update(regulation_statistics(outputs[1], outputs[2], labels, label_names, emotion_names))
        if isinstance(outputs, tuple) and len(outputs) >= 5 and model is not None:
            metrics.update(affect_reliance(model, outputs[3], outputs[4], outputs[2], labels))
        return metrics

    return compute_metrics


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


def stage1_label_statistics(data_report: dict) -> dict[str, float]:
    """What stage 1's labels were, for its results: with k-means labels, how strongly the clusters go with
    the emotions they replaced on the training faces (Cramér's V, mutual information in nats, and that
    information as a share of the emotions' entropy): near 0 means a non-emotion control."""
    clusters = data_report.get("kmeans_labels")
    if not clusters:
        return {}
    train = clusters["train"]
    return {
        f"kmeans_emotion_{key}": train[key]
        for key in ("cramers_v", "mutual_information", "information_share")
    }


def label_baselines(train_split, split, predictions: np.ndarray, prefix: str) -> dict[str, float]:
    """How a classifier that learned nothing would score: `majority_accuracy` (always answering the class
    most frequent in training), and the share of the predictions that fall on its most predicted class
    (`modal_prediction_share`). A stage 1 at the majority rate is a degenerate control (`stats.degenerate`)."""
    from .data.splits import column_values

    if not hasattr(train_split, "__len__") or not hasattr(split, "__len__") or len(split) == 0:
        return {}
    majority = int(np.bincount(column_values(train_split, "label")).argmax())
    labels = column_values(split, "label")
    predicted = np.bincount(np.asarray(predictions).astype(int))
    return {
        f"{prefix}_majority_accuracy": float(np.mean(labels == majority)),
        f"{prefix}_modal_prediction_share": float(predicted.max() / predicted.sum()),
    }


def rows_per_source(splits, data_report: dict) -> dict[str, dict[str, int]]:
    """Rows of each affective source per split actually used (after caps), from the `source` column;
    a streamed split, which cannot be counted, falls back to the loader's report."""
    from .data.splits import count_labels

    used: dict[str, dict[str, int]] = {name: {} for name in data_report["sources"]}
    for split_name, split in splits.items():
        counts = count_labels(split, "source")
        for name, stats in data_report["sources"].items():
            n = counts.get(name, 0) if counts is not None else stats.get(split_name)
            if n is not None:
                used[name][split_name] = int(n)
    return used


def rows_per_split(splits) -> dict[str, int]:
    """Rows of each split a run used; a streamed training split: the rows it trained on, counted as it
    streamed (`data.streaming.StreamedTrainSplit.counted`, once training has tallied them)."""
    return {
        name: len(split)
        if hasattr(split, "__len__")
        else sum(c["rows"] for c in (split.counted or {}).values())
        for name, split in splits.items()
    }


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
    trainer: EmoRegTrainer, splits, *, checkpoint: str | None, label_names, extra_results: dict | None = None
) -> tuple[dict, dict[str, str]]:
    """Train (resuming from `checkpoint`), save the model, evaluate on validation and, if present, test.
    `extra_results` (facts about the data, e.g. `stage1_label_statistics`) join the results.

    Returns the flat results dict written to `all_results.json` and the result files this run wrote (role
    -> name, for the run record); also writes `predictions_<split>.json` (labels, predictions, ρ) of the
    last evaluated split for the card's confusion matrix and ρ plots.
    """
    import json

    from safetensors import SafetensorError

    stash = _run_loss_at(checkpoint)
    trainer.loss_before_resume = stash["loss_sum"] if stash else 0.0
    try:
        # A checkpoint at the last step is finished without training; a sharded one (FSDP's DCP files,
        # DeepSpeed's states) is loaded only by Trainer inside train(), which then trains no more than a step.
        if (
            checkpoint is not None
            and not (trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled)
            and _is_last_step(checkpoint)
        ):
            train_metrics = finish_from_last_checkpoint(trainer, checkpoint, stash)
        else:
            train_metrics = trainer.train(resume_from_checkpoint=checkpoint).metrics
            _stop_request(trainer).raise_if_stopped(trainer.args.output_dir)  # pre-empted: checkpoint saved
        if trainer.is_fsdp_enabled:  # sharded checkpoints or not, the final model is one model.safetensors
            trainer.accelerator.state.fsdp_plugin.set_state_dict_type("FULL_STATE_DICT")
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


def input_pipeline(splits, model_geometry: dict, data_args, num_classes: int):
    """Loader transforms (uint8 at the working size), the collator, the saved image processor and the
    device-side finisher that matches it (docs/architecture.md, input path)."""
    import datasets

    from .data import Collator, DeviceFinisher, LoaderTransform, build_image_processor, infer_working_size
    from .data.streaming import StreamedTrainSplit, source_names

    size = model_geometry["size"]
    working_size = infer_working_size(splits["train"], max(size))
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
        num_classes=num_classes, mixup_alpha=data_args.mixup_alpha, cutmix_alpha=data_args.cutmix_alpha
    )
    processor = build_image_processor(size, model_geometry["mean"], model_geometry["std"])
    logger.info(
        "Input path: loader uint8 at %d px (%s) -> device resize to %s + normalise", working_size, color, size
    )
    return prepared, collator, processor, DeviceFinisher.from_image_processor(processor)
