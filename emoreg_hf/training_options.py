"""`TrainingArguments` as the recipes use them: options they cannot honour are refused before any work
(with the reason), settings every recipe needs are applied, and logging / evaluation intervals are chosen
where the user chose none, so every run has curves to draw."""

from __future__ import annotations

import logging
import math
import os

import torch
from transformers.trainer_utils import IntervalStrategy

logger = logging.getLogger(__name__)

# option -> (the value that would be a problem, why the recipes cannot honour it)
UNSUPPORTED = {
    "train_sampling_strategy": (
        ("group_by_length", "batch_rebalance"),
        "it groups or balances text by token length, and images have none",
    ),
    "neftune_noise_alpha": ("set", "NEFTune adds noise to the token embeddings of language models"),
    "use_liger_kernel": (True, "Liger kernels replace language-model layers"),
    "prediction_loss_only": (
        True,
        "the recipes report accuracy, calibration and regulation from predictions",
    ),
    "remove_unused_columns": (True, "the loader reads the `image` column, which the model does not take"),
    "label_names": ("set", "the recipes' batches carry their targets as `labels`"),
}
# Below this no trained float32 weight moves: Adam's step is about the learning rate (SGD's: it times a
# gradient), and a weight w changes only by more than |w|·2^-24 (6e-8), i.e. only weights under ~1e-23 would.
MIN_LEARNING_RATE = 1e-30
HUB_STRATEGIES = ("end", "every_save", "checkpoint")
CURVE_POINTS = 20  # training-loss points a run logs at least, unless the user chose logging_steps
EVAL_POINTS = 5  # validation points during training, unless the user chose an eval strategy


def _value(option) -> object:
    return getattr(option, "value", option)


def check_training_options(training_args, given: set[str]) -> None:
    """Refuse, before any work, options a user set that the recipes cannot honour."""
    problems = []
    for name, (bad, why) in UNSUPPORTED.items():
        value = _value(getattr(training_args, name, None))
        if isinstance(bad, tuple):
            refused = value in bad
        else:
            refused = value not in (None, False, 0, 0.0) if bad == "set" else value == bad
        if name in given and refused:
            problems.append(f"--{name} {value!r}: {why}")
    strategy = str(_value(training_args.hub_strategy))
    if training_args.push_to_hub and strategy not in HUB_STRATEGIES:
        problems.append(
            f"--hub_strategy {strategy}: the recipes publish the finished, carded folder (`end`), the current "
            "model at every save (`every_save`), and with `checkpoint` also the last resumable checkpoint (to the "
            "branch last-checkpoint); a commit of every checkpoint's optimizer states is never made"
        )
    problems += _missing_trackers(training_args, given)
    if problems:
        raise ValueError("these options cannot be used with the recipes:\n  " + "\n  ".join(problems))


# tracker -> what installs it (Trainer's `report_to` names); the project's extras where it has one
TRACKER_PACKAGES = {
    "tensorboard": "pip install -e '.[tensorboard]'",
    "trackio": "pip install -e '.[trackio]'",
}


def _missing_trackers(training_args, given: set[str]) -> list[str]:
    """A tracker named in `report_to` that is not installed is refused now, not after the data has loaded
    (Trainer raises when it builds its callbacks). (`report_to: all` with none installed: see cli.)"""
    from transformers.integrations import get_available_reporting_integrations

    if "report_to" not in given:
        return []
    named = [str(n) for n in (training_args.report_to or [])]
    available = set(get_available_reporting_integrations())
    return [
        f"--report_to {name}: {name} is not installed ({TRACKER_PACKAGES.get(name, f'pip install {name}')})"
        for name in named
        if name not in available
    ]


def check_training_values(training_args) -> None:
    """Numbers with which no training happens, or training goes the wrong way, refused as the command line is
    read (before any folder, data or model is touched): no epoch and no step, a learning rate ≤ 0, a batch
    or an accumulation of fewer than one example."""
    problems = []
    if training_args.max_steps <= 0 and training_args.num_train_epochs <= 0:
        problems.append(
            f"--num_train_epochs {training_args.num_train_epochs:g}: no training step would run "
            "(give a positive --num_train_epochs, or --max_steps)"
        )
    lr = training_args.learning_rate
    if not math.isfinite(lr):
        problems.append(f"--learning_rate {lr}: not a finite number (give a positive learning rate)")
    elif lr == 0:
        problems.append("--learning_rate 0: no parameter would change (give a positive learning rate)")
    elif lr < 0:
        problems.append(
            f"--learning_rate {lr:g}: a negative learning rate climbs the loss (give a positive one)"
        )
    elif lr < MIN_LEARNING_RATE:
        problems.append(
            f"--learning_rate {lr:.3g}: too small to change any weight (an optimizer's step is about the learning "
            "rate, and a float32 weight w moves only by a step above |w|·6e-8, so below "
            f"{MIN_LEARNING_RATE:g} nothing would be learned; give a positive one such as 1e-4)"
        )
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(training_args, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            problems.append(f"--{name} {value!r}: must be a whole number of at least 1")
    if problems:
        raise ValueError("no training would run as asked:\n  " + "\n  ".join(problems))


def prepare_training(training_args, given: set[str]):
    """Before any work: refuse options the recipes cannot honour, apply what every recipe needs, and with
    `--push_to_hub true` check the token and the repository (exiting with the reason, nothing trained).

    Returns the `publish.HubTarget` to push to, or None. The recipe pushes the finished, carded folder
    itself (and the current model at every save with `hub_strategy: every_save`); Trainer never pushes.
    """
    check_training_options(training_args, given)
    if training_args.save_only_model and training_args.save_strategy != IntervalStrategy.NO:
        logger.warning(
            "--save_only_model true: checkpoints keep the weights only (no optimizer or scheduler state), so "
            "an interrupted run cannot resume from them: the same command sets them aside and starts again "
            "from step 0"
        )
    push, training_args.push_to_hub = training_args.push_to_hub, False
    # The token lives in the push target only: Trainer pickles its arguments into training_args.bin.
    token, training_args.hub_token = training_args.hub_token, None
    training_args.remove_unused_columns = False  # the transform reads `image`, which the model does not take
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and training_args.device.type == "cpu":
        raise ValueError(
            "an FSDP accelerate config on the CPU: accelerate shards a model with FSDP only on GPU-like devices, "
            "and would run this as plain data parallelism without saying so. Run it on GPUs, or launch with "
            "torchrun / the DeepSpeed configs on a CPU (docs/scale.md lists what runs where)."
        )
    deepspeed = getattr(training_args, "deepspeed_plugin", None)
    if deepspeed is not None and not deepspeed.zero3_init_flag:
        # accelerate registers its DeepSpeed config with transformers even with zero3_init_flag off, and every
        # from_pretrained would then build its model partitioned by ZeRO-3 (re-initialising a replaced head
        # fails on the empty shards): the models are built whole, and DeepSpeed shards them in prepare().
        from transformers.integrations import unset_hf_deepspeed_config

        unset_hf_deepspeed_config()
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False  # nothing to pin for
    if not push or training_args.process_index != 0:
        return None
    from .publish.hub import HubPushError
    from .publish.push import start_push

    try:
        return start_push(training_args, token=token)
    except (HubPushError, ValueError) as error:
        raise SystemExit(f"push_to_hub: {error}\nNothing was trained.") from None


def sharded_training(training_args) -> str | None:
    """`FSDP` or `DeepSpeed` when the run shards its model (or its training) that way, else None."""
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" or training_args.fsdp:
        return "FSDP"
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true" or training_args.deepspeed:
        return "DeepSpeed"
    return None


def check_streaming(
    training_args, sources: list, *, kmeans_labels: bool = False, class_balance: bool = False
) -> None:
    """A streamed training split has no length and no epochs: refuse, before any data is read, a run that
    would need them (no `--max_steps`, or an `epoch` schedule that would never come or, with several
    ranks, come at different steps), or that must see every training row first (`--kmeans_labels`)."""
    from .data import SourceSpec

    streamed = [spec.display_name for spec in map(SourceSpec.from_any, sources) if spec.streaming]
    if not streamed:
        return
    problems = [] if training_args.max_steps > 0 else ["--max_steps N (optimizer steps) is needed"]
    for option in ("eval_strategy", "save_strategy", "logging_strategy"):
        if str(_value(getattr(training_args, option))) == "epoch":
            problems.append(f"--{option} epoch: use steps (--{option} steps)")
    if kmeans_labels:
        problems.append("--kmeans_labels clusters every training image first: load the source map-style")
    if class_balance:
        problems.append(
            "--class_weighting / --class_balanced_sampler count the training labels first: load it map-style"
        )
    if problems:
        raise ValueError(
            f"{', '.join(map(repr, streamed))} streams (streaming: true): a stream has no length and no "
            "epochs, so:\n  " + "\n  ".join(problems) + "\nNothing was loaded or trained."
        )


def pushes_every_save(training_args, target) -> bool:
    return target is not None and str(_value(training_args.hub_strategy)) in ("every_save", "checkpoint")


def known_rows(split) -> int | None:
    """Rows of a split, None for a streamed one (its length is unknown until it has been read)."""
    return len(split) if hasattr(split, "__len__") else None


def optimizer_steps(training_args, train_rows: int | None) -> int | None:
    """How many optimizer steps the run will take (None when a streamed split has no known length)."""
    if training_args.max_steps > 0:
        return training_args.max_steps
    if train_rows is None:
        return None
    per_process = training_args.train_batch_size  # per device, times the GPUs of nn.DataParallel
    batches = math.ceil(train_rows / (per_process * max(1, training_args.world_size)))
    per_epoch = max(1, batches // max(1, training_args.gradient_accumulation_steps))
    return math.ceil(per_epoch * training_args.num_train_epochs)


def check_training_steps(training_args, train_rows: int | None) -> int | None:
    """The run's optimizer steps, or an error naming the options when the data gives none."""
    steps = optimizer_steps(training_args, train_rows)
    if steps is not None and steps < 1:
        raise ValueError(
            f"no training step would run: {train_rows} training rows, --per_device_train_batch_size "
            f"{training_args.per_device_train_batch_size}, --gradient_accumulation_steps "
            f"{training_args.gradient_accumulation_steps}, --num_train_epochs {training_args.num_train_epochs:g}"
        )
    return steps


def choose_intervals(training_args, given: set[str], *, train_rows: int | None, has_validation: bool) -> None:
    """Where the user set no logging (or evaluation) schedule, log the training loss at least
    `CURVE_POINTS` times and evaluate on validation `EVAL_POINTS` times, so the card's curves are never
    empty (Trainer's defaults, every 500 steps and no evaluation, draw nothing on shorter runs)."""
    steps = check_training_steps(training_args, train_rows)
    if steps is None:
        return
    if not given & {"logging_steps", "logging_strategy"}:
        training_args.logging_strategy = IntervalStrategy.STEPS
        training_args.logging_steps = max(1, steps // CURVE_POINTS)
        logger.info("Logging the training loss every %d of %d steps", training_args.logging_steps, steps)
    if has_validation and not given & {"eval_strategy", "eval_steps"}:
        training_args.eval_strategy = IntervalStrategy.STEPS
        training_args.eval_steps = max(1, steps // EVAL_POINTS)
        logger.info("Evaluating on validation every %d of %d steps", training_args.eval_steps, steps)
