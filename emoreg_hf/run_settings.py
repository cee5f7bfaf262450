"""What makes two runs the same run: the settings a run folder is compared on when it is used again (the
recipe arguments, the hyperparameters and every TrainingArguments value that changes what is trained), their
defaults for a record that predates an option, the differences worded for a refusal, and the TrainingArguments
a checkpoint was saved with (its pickled `training_args.bin`, read without running any code the pickle names)."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

# What Trainer torch.saves into every checkpoint: its TrainingArguments, pickled.
TRAINING_ARGS_FILE = "training_args.bin"

# TrainingArguments that do not change what is trained (where the run goes, what is logged or saved, how
# fast or where it runs); every other field is compared when a run folder is used again.
IGNORED_TRAINING_ARGUMENTS = frozenset(
    {
        # where the run goes and what it is called
        "output_dir", "run_name", "project", "trackio_space_id", "trackio_bucket_id", "trackio_static_space_id",
        "resume_from_checkpoint", "do_train", "do_eval", "do_predict",
        # what is logged and reported
        "logging_strategy", "logging_steps", "logging_first_step", "log_on_each_node", "logging_nan_inf_filter",
        "include_num_input_tokens_seen", "log_level", "log_level_replica", "disable_tqdm", "report_to",
        "skip_memory_metrics", "debug",
        # evaluation during training (the final evaluation is of the trained weights)
        "eval_strategy", "eval_steps", "eval_delay", "per_device_eval_batch_size", "eval_on_start",
        "eval_do_concat_batches", "eval_use_gather_object", "eval_accumulation_steps", "include_for_metrics",
        "batch_eval_metrics",
        # checkpoints and publishing (not `save_only_model`: its checkpoints cannot resume the run)
        "save_strategy", "save_steps", "save_on_each_node", "save_total_limit",
        "enable_jit_checkpoint", "restore_callback_states_from_checkpoint", "push_to_hub", "hub_token",
        "hub_private_repo", "hub_model_id", "hub_strategy", "hub_always_push", "hub_revision",
        # how and where it runs: the same arithmetic, another speed or memory
        "use_cpu", "torch_compile", "torch_compile_backend", "torch_compile_mode", "gradient_checkpointing",
        "gradient_checkpointing_kwargs", "activation_checkpointing", "activation_checkpointing_kwargs",
        "torch_empty_cache_steps", "use_cache", "dataloader_num_workers", "dataloader_pin_memory",
        "dataloader_persistent_workers", "dataloader_prefetch_factor", "dataloader_multiprocessing_context",
        "ddp_backend", "ddp_timeout", "ddp_bucket_cap_mb", "ddp_find_unused_parameters", "ddp_static_graph",
        "local_rank",
        # set by the recipes themselves (training_options.prepare_training)
        "remove_unused_columns", "label_names", "length_column_name",
    }
)  # fmt: skip


# Recipe arguments that do not change what is trained: how the folder is used, the memory format.
IGNORED_RECIPE_ARGUMENTS = frozenset({"overwrite_output_dir", "channels_last"})


# With `load_best_model_at_end` these choose which checkpoint becomes the model, so they count.
BEST_MODEL_SCHEDULE = frozenset({"eval_strategy", "eval_steps", "eval_delay", "save_strategy", "save_steps"})


def ignored_arguments(training_args) -> frozenset[str]:
    """The TrainingArguments not compared for these arguments: `IGNORED_TRAINING_ARGUMENTS`, less the
    evaluation and save schedule when `load_best_model_at_end` lets them choose the final model."""
    if getattr(training_args, "load_best_model_at_end", False):
        return IGNORED_TRAINING_ARGUMENTS - BEST_MODEL_SCHEDULE
    return IGNORED_TRAINING_ARGUMENTS


def training_arguments(training_args) -> dict[str, Any]:
    """Every TrainingArguments value that changes what is trained (all but `IGNORED_TRAINING_ARGUMENTS`, and
    those the hyperparameter summary already holds), as JSON would store them."""
    summary = set(training_summary(training_args, None))
    ignored = ignored_arguments(training_args)
    values = {
        name: value
        for name, value in training_args.to_dict().items()
        if name not in ignored and name not in summary
    }
    return json.loads(json.dumps(values, default=str))


def comparable_settings(
    config: dict[str, Any], hyperparameters: dict[str, Any], arguments: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What makes two runs the same run: the recipe arguments, the hyperparameters and every other
    TrainingArguments value that changes training, as JSON would store them (the image size is left out:
    it is known only once the model is built)."""
    settings = {k: v for k, v in config.items() if k not in IGNORED_RECIPE_ARGUMENTS}
    settings.update({f"hyperparameters.{k}": v for k, v in hyperparameters.items() if k != "image_size"})
    settings.update({f"training_args.{k}": v for k, v in (arguments or {}).items()})
    return json.loads(json.dumps(settings, default=str))


def run_settings(script_args, training_args) -> dict[str, Any]:
    """`comparable_settings` of the run these arguments describe."""
    return comparable_settings(
        vars(script_args), training_summary(training_args, None), training_arguments(training_args)
    )


def settings_differences(
    recorded: dict[str, Any], now: dict[str, Any], run: str, defaults: dict[str, Any] | None = None
) -> list[str]:
    """One line per setting that differs (`seed: 7 in the <run>, 8 now`). A TrainingArguments field only one
    side knows (a run recorded by an older emoreg-hf or transformers) is not a difference; an option the
    record predates counts as its default (`defaults`: `setting_defaults`), the value that run had."""
    older = {k: v for k, v in (defaults or {}).items() if k not in recorded and k in now}
    recorded = {**older, **recorded}
    keys = set(recorded) | set(now)
    keys -= {k for k in keys if k.startswith("training_args.") and (k not in recorded or k not in now)}
    return [
        f"  {key}: {_short(recorded.get(key))} in the {run}, {_short(now.get(key))} now"
        for key in sorted(keys)
        if recorded.get(key) != now.get(key)
    ]


def setting_defaults(script_args) -> dict[str, Any]:
    """Each setting's default, as `comparable_settings` keys it: the recipe argument dataclass's field
    defaults, and TrainingArguments' for the hyperparameters. A record written before an option existed
    was made with its default."""
    import dataclasses
    import enum

    from transformers import TrainingArguments

    def defaults(cls) -> dict[str, Any]:
        values = {}
        for field in dataclasses.fields(cls):
            if field.default is not dataclasses.MISSING:
                values[field.name] = field.default
            elif field.default_factory is not dataclasses.MISSING:
                values[field.name] = field.default_factory()
        return {k: v.value if isinstance(v, enum.Enum) else v for k, v in values.items()}

    summary = {f"hyperparameters.{k}": v for k, v in defaults(TrainingArguments).items()}
    recipe = defaults(type(script_args)) if dataclasses.is_dataclass(script_args) else {}
    return json.loads(json.dumps({**recipe, **summary}, default=str))


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def training_summary(training_args, image_size) -> dict[str, Any]:
    """The hyperparameters a card and a comparison need, from `TrainingArguments`.

    `world_size` counts the model replicas that train together: the processes, times the GPUs of each when
    one process drives several (Trainer's `nn.DataParallel`, when a plain `python` run sees many GPUs);
    `global_batch_size` is the images one optimizer step sees, as Trainer batches them."""
    replicas = training_args.world_size * max(1, training_args.n_gpu)
    return {
        "learning_rate": training_args.learning_rate,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "per_device_train_batch_size": training_args.per_device_train_batch_size,
        "gradient_accumulation_steps": training_args.gradient_accumulation_steps,
        "world_size": replicas,
        "global_batch_size": training_args.per_device_train_batch_size
        * replicas
        * training_args.gradient_accumulation_steps,
        "weight_decay": training_args.weight_decay,
        "warmup_ratio": getattr(training_args, "warmup_ratio", None),
        "warmup_steps": training_args.warmup_steps,
        "lr_scheduler_type": str(
            getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type)
        ),
        "optim": str(getattr(training_args.optim, "value", training_args.optim)),
        "label_smoothing_factor": training_args.label_smoothing_factor,
        "seed": training_args.seed,
        "bf16": training_args.bf16,
        "fp16": training_args.fp16,
        "image_size": image_size,
    }


def legacy_checkpoint_differences(checkpoint: str, training_args) -> list[str]:
    """How the TrainingArguments `checkpoint` was saved with (its `training_args.bin`, read without running
    it) differ from `training_args`, one line each, as `settings_differences` words them; the fields both
    know and that change training are compared. Raises ValueError when they cannot be known."""
    if training_args is None:
        raise ValueError("no settings to compare it with were given")
    saved = saved_training_arguments(checkpoint)
    if saved is None:
        raise ValueError(f"it has no {TRAINING_ARGS_FILE}")
    now = training_args.to_dict()
    summary = set(training_summary(training_args, None))
    ignored = ignored_arguments(training_args)
    compared = [k for k in now if k in saved and k not in ignored and not k.endswith("_token")]

    def keyed(values: dict[str, Any]) -> dict[str, Any]:
        named = {f"{'hyperparameters' if k in summary else 'training_args'}.{k}": values[k] for k in compared}
        return json.loads(json.dumps(named, default=str))

    return settings_differences(keyed(saved), keyed(now), "checkpoint")


# -- a checkpoint's training_args.bin, read without running it ---------------------------------------------


class _Inert:
    """Stands for any object a pickle names: keeps the arguments and state it was rebuilt from, and runs
    none of the code of the class it stands for."""

    args: tuple = ()
    state: Any = None

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _InertUnpickler(pickle.Unpickler):
    """Reads a pickle without importing or calling anything it names: every class or function it names is an
    `_Inert` stand-in, so an untrusted file runs no code (transformers' own `torch.load(weights_only=False)`
    would run whatever it names)."""

    def find_class(self, module: str, name: str):
        return type(name, (_Inert,), {"pickled_as": f"{module}.{name}"})

    def persistent_load(self, pid):  # a tensor's storage: no TrainingArguments field holds one
        return None


def _plain(value: Any) -> Any:
    """Plain values from what `_InertUnpickler` rebuilt: an object becomes the dict of its fields, an
    enum member (or a device) the value it was made from."""
    if isinstance(value, _Inert):
        state = value.state
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            return {str(k): _plain(v) for k, v in state.items()}
        return _plain(value.args[0]) if len(value.args) == 1 else f"<{value.pickled_as}>"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def saved_training_arguments(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The fields of the TrainingArguments a checkpoint was saved with (its `training_args.bin`, a
    `torch.save` zip archive holding one pickle), as plain values; None when the checkpoint has no such
    file. Raises ValueError when it cannot be read."""
    path = Path(folder) / TRAINING_ARGS_FILE
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            fields = _plain(_InertUnpickler(io.BytesIO(archive.read(name))).load())
    except Exception as error:  # noqa: BLE001 - nothing runs: any failure is an unreadable file
        raise ValueError(f"{TRAINING_ARGS_FILE} cannot be read ({type(error).__name__})") from None
    if not isinstance(fields, dict) or "learning_rate" not in fields:
        raise ValueError(f"{TRAINING_ARGS_FILE} holds no TrainingArguments")
    return fields
