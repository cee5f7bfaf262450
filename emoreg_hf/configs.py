"""Argument dataclasses of the recipes and their parser: `recipe.py [CONFIG.yaml] [--key value ...]`.

YAML gives the run; `--key value` (or `--key=value`) overrides any key of the script arguments or of
`TrainingArguments`. Structured values (a source list, a model config) are YAML on the command line too:
`--dataset '{path: parquet, data_dir: ./cifar}'`. Unknown keys fail with the closest known names.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import os
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser, TrainingArguments

from .configuration_emoreg import AFFECT_TRAINABLE_MODES, INFLUENCE_MODES, REGULATION_MODES

AUGMENTATIONS = ("none", "basic", "randaugment", "trivialaugment", "autoaugment")
METHODS = ("emoreg", "baseline", "transfer")
# FinetuneArguments fields that are EmoRegConfig options of the same name.
EMOREG_OPTIONS = (
    "influence",
    "regulation",
    "rho_init",
    "aux_loss_weight",
    "affect_trainable",
    "affect_lr_scale",
)


def _choice(name: str, value: Any, allowed: typing.Iterable) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"--{name} {value!r} is not valid; allowed values: {', '.join(map(str, allowed))}")


@dataclass
class DataArguments:
    """Shared by both stages: how images are read and augmented."""

    augmentation: str = field(
        default="basic", metadata={"help": f"Train-time augmentation: {', '.join(AUGMENTATIONS)}."}
    )
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup alpha in the collator (0 = off)."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix alpha in the collator (0 = off)."})
    validation_split_size: float = field(
        default=0.1,
        metadata={
            "help": "Share of train carved out (stratified, seeded) when there is no validation split."
        },
    )
    on_bad_image: str = field(
        default="error", metadata={"help": "An unreadable image: `error` (names it) or `skip`."}
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Cap the train split (quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Cap the validation and test splits."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Reuse a non-empty output_dir that holds no checkpoint to resume."}
    )

    def __post_init__(self):
        _choice("augmentation", self.augmentation, AUGMENTATIONS)
        _choice("on_bad_image", self.on_bad_image, ("error", "skip"))
        if not 0 < self.validation_split_size < 1:
            raise ValueError(f"--validation_split_size must be in (0, 1), got {self.validation_split_size}")


@dataclass
class PretrainArguments(DataArguments):
    """Stage 1: train an image classifier on emotion labels."""

    affective_sources: list[dict] | str | None = field(
        default=None,
        metadata={
            "help": "Affective data sources: a list of source specs (path, label_column, weight, ...) "
            "or a YAML file holding that list under `affective_sources:`."
        },
    )
    taxonomy: str | dict = field(
        default="ekman7",
        metadata={"help": "Emotion label space: ekman7, mikels8, valence3 or {name, labels}."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Backbone to start from: Hub id, local dir or timm id (timm/resnet50.a1_in1k)."},
    )
    model_config: dict | None = field(
        default=None, metadata={"help": "Train from scratch: a dict with model_type and its fields."}
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Input size for a model built from scratch."}
    )
    shuffle_labels: bool = field(
        default=False,
        metadata={"help": "Shuffled-emotion control: permute emotion labels within each source."},
    )

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.affective_sources, str):  # a YAML file holding the list, shared by recipes
            self.affective_sources = read_source_list(self.affective_sources)
        if not self.affective_sources:
            raise ValueError(
                "--affective_sources is required: a list of source specs (see recipes/demo/pretrain.yaml)"
            )
        if (self.model_name_or_path is None) == (self.model_config is None):
            raise ValueError(
                "give exactly one of --model_name_or_path (a checkpoint) or --model_config (from scratch)"
            )
        if self.model_config is not None and "model_type" not in self.model_config:
            raise ValueError(f"--model_config needs a model_type key, got keys {sorted(self.model_config)}")


@dataclass
class FinetuneArguments(DataArguments):
    """Stage 2: fine-tune EmoReg (or a control) on a target data set."""

    dataset: str | dict = field(
        default="cifar10", metadata={"help": "Preset (cifar10, cifar100, demo) or a source spec."}
    )
    method: str = field(
        default="emoreg",
        metadata={
            "help": "emoreg; baseline = task pathway alone; transfer = fine-tune the affective backbone."
        },
    )
    affect_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Stage-1 checkpoint (Hub id or local dir) for the affective pathway."}
    )
    affect_init: str = field(
        default="pretrained",
        metadata={
            "help": "`pretrained`, or `random` for the no-pretraining control (same architecture, random weights)."
        },
    )
    task_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Task backbone checkpoint (e.g. google/vit-base-patch16-224-in21k)."}
    )
    task_model_config: dict | None = field(
        default=None,
        metadata={"help": "Build the task backbone from scratch: a dict with model_type and its fields."},
    )
    image_size: int | None = field(
        default=None, metadata={"help": "Input size for a task backbone built from scratch."}
    )
    regulation: str = field(default="adaptive", metadata={"help": f"{', '.join(REGULATION_MODES)}."})
    influence: str = field(default="concat", metadata={"help": f"{', '.join(INFLUENCE_MODES)}."})
    rho_init: float = field(default=0.5, metadata={"help": "Initial regulation strength in [0, 1]."})
    aux_loss_weight: float = field(default=0.5, metadata={"help": "Weight of ½(CE(z_N) + CE(z_E))."})
    affect_trainable: str = field(
        default="frozen", metadata={"help": f"{', '.join(AFFECT_TRAINABLE_MODES)}."}
    )
    affect_lr_scale: float = field(
        default=0.1, metadata={"help": "LR multiplier of a trainable affective pathway."}
    )

    def __post_init__(self):
        super().__post_init__()
        _choice("method", self.method, METHODS)
        _choice("affect_init", self.affect_init, ("pretrained", "random"))
        _choice("regulation", self.regulation, REGULATION_MODES)
        _choice("influence", self.influence, INFLUENCE_MODES)
        _choice("affect_trainable", self.affect_trainable, AFFECT_TRAINABLE_MODES)
        if self.method in ("emoreg", "transfer") and not self.affect_model_name_or_path:
            raise ValueError(
                f"--method {self.method} needs --affect_model_name_or_path (a stage-1 checkpoint)"
            )
        if self.method in ("emoreg", "baseline"):
            if (self.task_model_name_or_path is None) == (self.task_model_config is None):
                raise ValueError(
                    f"--method {self.method} needs exactly one of --task_model_name_or_path or --task_model_config"
                )
            if self.task_model_config is not None and "model_type" not in self.task_model_config:
                raise ValueError(
                    f"--task_model_config needs a model_type key, got keys {sorted(self.task_model_config)}"
                )


def read_source_list(path: str) -> list[dict]:
    """The `affective_sources` list of a YAML file (a path relative to the working directory or the repo)."""
    candidates = [Path(path), Path(__file__).resolve().parents[1] / path]
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise FileNotFoundError(f"--affective_sources: source list file {path!r} not found")
    content = yaml.safe_load(found.read_text())
    sources = content.get("affective_sources") if isinstance(content, dict) else content
    if not isinstance(sources, list):
        raise ValueError(f"{found} must hold a list of source specs under `affective_sources:`")
    return sources


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def _unwrap_optional(tp):
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _is_textual(tp) -> bool:
    """A field whose value is a word (str or an enum such as IntervalStrategy), never a structure or bool."""
    members = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
    if any(typing.get_origin(m) in (list, dict) or m in (list, dict, bool) for m in members):
        return False
    return any(isinstance(m, type) and issubclass(m, str | enum.Enum) for m in members)


def _convert(name: str, raw: str, tp, default: Any = None) -> Any:
    """A command-line string to the field's type; structured types are parsed as YAML. `none` is None for
    optional fields whose default is None, and the word itself elsewhere (`--report_to none`)."""
    optional = typing.get_origin(tp) in (typing.Union, types.UnionType) and default is None
    if raw.lower() in ("none", "null") and optional:
        return None
    base = _unwrap_optional(tp)
    try:
        if base is bool:
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1", "yes")
        if base is int:
            return int(raw)
        if base is float:
            return float(raw)
        if _is_textual(base):
            return raw
    except ValueError as err:
        raise ValueError(f"--{name}: cannot read {raw!r} as {getattr(base, '__name__', base)}") from err
    value = yaml.safe_load(raw)
    return value


def _coerce_numbers(values: dict, types_by_name: dict) -> dict:
    """YAML 1.1 reads `1e-4` as a string; numeric fields get numbers."""
    out = {}
    for key, value in values.items():
        base = _unwrap_optional(types_by_name.get(key))
        if isinstance(value, str) and base in (int, float):
            value = _convert(key, value, base)
        elif isinstance(value, bool) and _is_textual(base):  # YAML 1.1 reads `no` as False
            value = "yes" if value else "no"
        out[key] = value
    return out


def read_overrides(argv: list[str]) -> dict[str, str]:
    """`--key value`, `--key=value` and bare `--flag` (true) -> {key: raw string}; `-` in keys reads as `_`."""
    overrides, i = {}, 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--"):
            raise ValueError(
                f"unexpected argument {token!r}: options are --key value (the config file comes first)"
            )
        key = token[2:]
        if "=" in key:
            key, value = key.split("=", 1)
            i += 1
        elif i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            value = argv[i + 1]
            i += 2
        else:  # a bare flag: --push_to_hub
            value = "true"
            i += 1
        overrides[key.replace("-", "_")] = value
    return overrides


class RecipeArgumentParser(HfArgumentParser):
    """`HfArgumentParser` over (script arguments, TrainingArguments) with YAML + CLI overrides."""

    def __init__(self, script_class: type, default_config: str | Path | None = None):
        super().__init__((script_class, TrainingArguments))
        self.default_config = default_config
        self.types_by_name = {}
        self.defaults_by_name = {}
        for dtype in self.dataclass_types:
            hints = typing.get_type_hints(dtype)
            for f in dataclasses.fields(dtype):
                if f.init:
                    self.types_by_name[f.name] = hints.get(f.name, f.type)
                    self.defaults_by_name[f.name] = None if f.default is dataclasses.MISSING else f.default

    def parse(self, argv: list[str] | None = None) -> tuple:
        """Return `(script_args, training_args, config_path)`."""
        argv = list(sys.argv[1:] if argv is None else argv)
        config_path = None
        if argv and not argv[0].startswith("--"):
            config_path = argv.pop(0)
        elif self.default_config is not None:
            config_path = str(self.default_config)
        values: dict = {}
        if config_path is not None:
            if not Path(config_path).is_file():
                raise FileNotFoundError(f"config file {config_path!r} not found")
            values = yaml.safe_load(Path(config_path).read_text()) or {}
            if not isinstance(values, dict):
                raise ValueError(
                    f"{config_path} must hold a mapping of keys to values, got {type(values).__name__}"
                )
        overrides = read_overrides(argv)
        self._check_known({**values, **overrides}, config_path)
        values = _coerce_numbers(values, self.types_by_name)
        for key, raw in overrides.items():
            values[key] = _convert(key, raw, self.types_by_name[key], self.defaults_by_name[key])
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and "use_cpu" not in values and not _has_accelerator():
            # torchrun on a CPU-only machine: without use_cpu each rank would silently train alone.
            values["use_cpu"] = True
        script_args, training_args = self.parse_dict(values)
        return script_args, training_args, config_path

    def _check_known(self, values: dict, config_path: str | None) -> None:
        unknown = [k for k in values if k not in self.types_by_name]
        if unknown:
            lines = []
            for key in unknown:
                close = difflib.get_close_matches(key, self.types_by_name, n=3, cutoff=0.6)
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                lines.append(f"  {key}{hint}")
            where = f" in {config_path} or the command line" if config_path else ""
            raise ValueError("unknown keys" + where + ":\n" + "\n".join(lines))
