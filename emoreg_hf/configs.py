"""Argument dataclasses of the recipes: what `recipes/pretrain.py` and `recipes/finetune.py` accept besides
`TrainingArguments`. Each field's `help` is what `-h` prints; a choice option declares its words
(`choices`, as EmoReg's options do: `-h` lists them and a word outside them is refused at parse time);
`__post_init__` checks values before any work. The parser (YAML + command line) is `emoreg_hf.cli`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import registry
from .configuration_emoreg import COLOR_MODES as MODEL_COLOR_MODES
from .configuration_emoreg import EmoRegOptions, option_choices

CLASS_WEIGHTINGS = ("none", "balanced")  # emoreg_hf.balance computes them (torch stays out of parsing)
AUGMENTATIONS = ("none", "basic", "padcrop", "randaugment", "trivialaugment", "autoaugment")
AFFECT_INITS = ("pretrained", "random")
ON_BAD_IMAGE = ("error", "skip")
COLOR_MODES = ("auto", *MODEL_COLOR_MODES)  # the model's modes (configuration_emoreg), or inferred from data
TTA_MODES = ("none", "flip", "ten_crop")  # emoreg_hf.tta computes them
EMA_SAVES = ("raw", "ema")  # emoreg_hf.ema keeps the average


# PretrainedConfig keywords every family takes besides its own (`__init__` pops them from kwargs).
COMMON_CONFIG_KEYS = ("num_labels", "torch_dtype", "label_names", "tie_word_embeddings", "name_or_path")


def check_model_config(option: str, model_config: dict) -> None:
    """A from-scratch model config names a known `model_type` and only keys its config class knows: a typo
    (`hiden_sizes`) would otherwise be stored as an unused attribute and the family's default built."""
    import difflib
    import inspect

    from transformers import CONFIG_MAPPING

    if "model_type" not in model_config:
        raise ValueError(f"--{option} needs a model_type key, got keys {sorted(model_config)}")
    model_type = model_config["model_type"]
    if model_type not in CONFIG_MAPPING:
        close = difflib.get_close_matches(str(model_type), list(CONFIG_MAPPING.keys()), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"--{option}: unknown model_type {model_type!r}{hint}")
    config_class = CONFIG_MAPPING[model_type]
    known = set(config_class().to_dict()) | set(getattr(config_class, "attribute_map", {}) or {})
    known |= set(inspect.signature(config_class.__init__).parameters) | set(COMMON_CONFIG_KEYS)
    unknown = sorted(set(model_config) - known - {"self", "kwargs"})
    if unknown:
        lines = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=3, cutoff=0.6)
            lines.append(f"  {key}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ValueError(
            f"--{option}: {config_class.__name__} ({model_type}) has no key(s):\n" + "\n".join(lines)
        )


def check_choices(args: Any) -> None:
    """The parse-time refusal of every choice option (a field whose metadata declares `choices`): a word
    outside them is a `ValueError` that names the option and the allowed words."""
    for option in dataclasses.fields(args):
        if option.metadata.get("choices") is None:
            continue
        allowed, value = tuple(option_choices(option)), getattr(args, option.name)
        if value not in allowed:
            raise ValueError(
                f"--{option.name} {value!r} is not valid; allowed values: {', '.join(map(str, allowed))}"
            )


@dataclass
class DataArguments:
    """Shared by both stages: how images are read and augmented."""

    augmentation: str = field(
        default="basic",
        metadata={
            "help": "Train-time augmentation (basic: random resized crop + flip; padcrop: reflect-pad an eighth "
            "of the side, random crop, flip - the small-image policy):",
            "choices": AUGMENTATIONS,
        },
    )
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup alpha in the collator (0 = off)."})
    cutmix_alpha: float = field(default=0.0, metadata={"help": "CutMix alpha in the collator (0 = off)."})
    class_weighting: str = field(
        default="none",
        metadata={
            "help": "Class imbalance in the loss (`balanced`: weights n/(K*n_c) from the training split's "
            "counts on every cross-entropy term, EmoReg's three included; recorded and on the card):",
            "choices": CLASS_WEIGHTINGS,
        },
    )
    class_balanced_sampler: bool = field(
        default=False,
        metadata={
            "help": "Draw training images class-balanced (each class equally often, with replacement); "
            "use it or class_weighting, not both (that corrects twice)."
        },
    )
    channels_last: bool = field(
        default=False,
        metadata={
            "help": "Train and evaluate in the channels-last memory format (NHWC): the model's 4-D weights and "
            "every finished batch. Only the speed of convolutions changes (oneDNN on CPUs, tensor cores on "
            "GPUs), not what is trained; measure it first (benchmarks/cpu_efficiency.py)."
        },
    )
    validation_split_size: float = field(
        default=0.1,
        metadata={
            "help": "Share of train carved out (stratified, seeded) when there is no validation split."
        },
    )
    on_bad_image: str = field(
        default="error",
        metadata={"help": "An unreadable image (`error` names it):", "choices": ON_BAD_IMAGE},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Cap the train split (quick runs)."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"help": "Cap the validation and test splits."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Start over in an output_dir that holds an earlier run: the files its record lists "
            "(weights, results, checkpoints, card) are removed first; your own files there stay. A folder "
            "that never held a run is refused unless it is empty."
        },
    )

    def __post_init__(self):
        check_choices(self)  # the choice options of every stage (this class and its subclasses)
        if not 0 < self.validation_split_size < 1:
            raise ValueError(f"--validation_split_size must be in (0, 1), got {self.validation_split_size}")


@dataclass
class AveragingArguments:
    """Shared by both stages: averages evaluated beside the trained model after training, under their own
    result keys (the plain evaluation stays the headline): over test-time views (TTA) and over training
    steps (an EMA of the weights)."""

    tta: str = field(
        default="none",
        metadata={
            "help": "Test-time augmentation, reported as <split>_tta_* beside the plain results (flip: the image "
            "and its mirror image; ten_crop: corners and centre of the image enlarged 1.125x, and of its "
            "mirror image; softmax averaged over the views):",
            "choices": TTA_MODES,
        },
    )
    ema_decay: float | None = field(
        default=None,
        metadata={
            "help": "Keep an exponential moving average of the weights with this decay (e.g. 0.999; timm's "
            "ModelEmaV3, updated after every optimizer step, saved in checkpoints), evaluated after training "
            "as <split>_ema_* beside the trained weights."
        },
    )
    ema_warmup: bool = field(
        default=False,
        metadata={
            "help": "Warm the EMA's decay up (timm: 1 - (1 + step)^-2/3 until it reaches --ema_decay)."
        },
    )
    ema_save: str = field(
        default="raw",
        metadata={
            "help": "Which weights the run saves and publishes (ema needs --ema_decay; the results name both):",
            "choices": EMA_SAVES,
        },
    )

    def check_averaging(self) -> None:
        """Refused as the command line is read: a decay outside (0, 1), EMA options without a decay."""
        decay = self.ema_decay
        if decay is not None and not (isinstance(decay, (int, float)) and 0 < decay < 1):
            raise ValueError(
                f"--ema_decay {decay!r}: must be in (0, 1), e.g. 0.999 (each step keeps that share of the average)"
            )
        given = ["--ema_save ema"] * (self.ema_save == "ema") + ["--ema_warmup true"] * bool(self.ema_warmup)
        if decay is None and given:
            raise ValueError(
                f"{' and '.join(given)} needs --ema_decay (without it no EMA of the weights is kept)"
            )


@dataclass
class PretrainArguments(AveragingArguments, DataArguments):
    """Stage 1: train an image classifier on emotion labels."""

    affective_sources: list[dict] | str | None = field(
        default=None,
        metadata={
            "help": "Affective data sources: a list of source specs (path, label_column, weight, ...; "
            "or a source as its authors released it, `preset: NAME` plus where your copy is, e.g. "
            "{preset: fer2013, data_files: /path/to/fer2013.csv}, or FER+'s votes with "
            "{preset: ferplus, data_files: /path/to/fer2013.csv, votes: /path/to/fer2013new.csv, "
            "label_mode: majority|probability|crossentropy}; docs/data-sources.md) "
            "or a YAML file holding that list under `affective_sources:`."
        },
    )
    taxonomy: str | dict = field(
        default="ekman7",
        metadata={"help": "Emotion label space: ekman7, mikels8, valence3, ferplus8 or {name, labels}."},
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
    kmeans_labels: bool = field(
        default=False,
        metadata={
            "help": "Non-emotion control: replace the labels by k-means clusters of the same images (as many "
            "clusters as there are labels; learnable, and their association with the emotions is reported)."
        },
    )
    target_dataset: str | dict | None = field(
        default=None,
        metadata={
            "help": "Positive control: train on a target data set's own training split and classes (a preset "
            "or source spec, as finetune's --dataset; the same validation carve) instead of affective sources."
        },
    )
    color_mode: str = field(
        default="auto",
        metadata={
            "help": "The pathway's input colour (grayscale: every image becomes its luminance; auto: grayscale "
            "when the training images have one channel, as FER-2013's faces). Recorded in the checkpoint's "
            "config (`input_color_mode`); EmoReg converts its input to it:",
            "choices": COLOR_MODES,
        },
    )

    def __post_init__(self):
        super().__post_init__()
        self.check_averaging()
        if isinstance(self.affective_sources, str):  # a YAML file holding the list, shared by recipes
            self.affective_sources = read_source_list(self.affective_sources)
        if self.target_dataset is not None and self.affective_sources:
            raise ValueError("give --affective_sources or --target_dataset (the positive control), not both")
        if self.target_dataset is None and not self.affective_sources:
            raise ValueError(
                "--affective_sources is required: a list of source specs (see recipes/demo/pretrain.yaml)"
            )
        if self.kmeans_labels and self.shuffle_labels:
            raise ValueError("--kmeans_labels and --shuffle_labels are two different controls; choose one")
        if (self.model_name_or_path is None) == (self.model_config is None):
            raise ValueError(
                "give exactly one of --model_name_or_path (a checkpoint) or --model_config (from scratch)"
            )
        if self.model_config is not None:
            check_model_config("model_config", self.model_config)


@dataclass
class FinetuneArguments(AveragingArguments, DataArguments, EmoRegOptions):
    """Stage 2: fine-tune EmoReg (or a control) on a target data set.

    EmoReg's options (`regulation`, `rho_init`, ...) come from `EmoRegOptions`, where they are declared once.
    """

    dataset: str | dict = field(
        default="cifar10", metadata={"help": "Preset (cifar10, cifar100, demo) or a source spec."}
    )
    method: str = field(
        default=registry.DEFAULT_METHOD,
        metadata={
            "help": "The stage-2 method ("
            + "; ".join(f"{m.name} = {m.description}" for m in registry.METHODS.values())
            + "):",
            "choices": tuple(registry.METHODS),
        },
    )
    affect_model_name_or_path: str | None = field(
        default=None, metadata={"help": "Stage-1 checkpoint (Hub id or local dir) for the affective pathway."}
    )
    affect_init: str = field(
        default="pretrained",
        metadata={
            "help": "The affective pathway's weights (`random`: the no-pretraining control, same architecture):",
            "choices": AFFECT_INITS,
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
    affect_color_mode: str = field(
        default="auto",
        metadata={
            "help": "What the affective pathway is given (auto: what stage 1 recorded, grayscale faces -> the "
            "luminance of the task image):",
            "choices": COLOR_MODES,
        },
    )

    def __post_init__(self):
        super().__post_init__()
        self.check_emoreg_options()  # checked here, when the command line is parsed: before any data is read
        self.check_averaging()
        method = registry.METHODS[self.method]
        if method.uses_affect and not self.affect_model_name_or_path:
            raise ValueError(
                f"--method {self.method} needs --affect_model_name_or_path (a stage-1 checkpoint)"
            )
        if method.uses_task:
            if (self.task_model_name_or_path is None) == (self.task_model_config is None):
                raise ValueError(
                    f"--method {self.method} needs exactly one of --task_model_name_or_path or --task_model_config"
                )
            if self.task_model_config is not None:
                check_model_config("task_model_config", self.task_model_config)


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
