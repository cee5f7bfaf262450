"""EmoReg configuration: two backbone sub-configs plus the regulation options (arXiv:2606.13081, as
emoreg-hf's docs/method.md defines them).

This file travels to the Hub as remote code next to `modeling_emoreg.py`, so it imports only
`transformers` and its sibling `configuration_small_resnet.py`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from .configuration_small_resnet import SmallResNetConfig

# A pathway may be the small-image ResNet of this package: its config must resolve wherever an EmoReg
# config is read, also as remote code in a process that never imported emoreg_hf. Registered only when
# absent, so the package's own class is never replaced by a remote-code copy (or the other way round).
if SmallResNetConfig.model_type not in CONFIG_MAPPING:
    AutoConfig.register(SmallResNetConfig.model_type, SmallResNetConfig)

AFFECT_TRAINABLE_MODES = ("frozen", "all")
AFFECT_NORM_MODES = ("none", "layernorm")
COLOR_MODES = ("rgb", "grayscale")
# ITU-R 601 luma, the weights of PIL's convert("L"): what a grayscale-trained pathway is given.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def regulation_modes() -> tuple[str, ...]:
    """The regulation modes: each one's parameters, initialisation, ρ and card formula are declared together
    in `regulation_emoreg.REGULATIONS` (imported on use; it is light: torch only, no model code)."""
    from .regulation_emoreg import REGULATIONS

    return tuple(REGULATIONS)


def influence_modes() -> tuple[str, ...]:
    """The influence modes: each one's layers, initialisation and influenced features are declared together
    in `influence_emoreg.INFLUENCES` (imported on use; it is light: torch only, no model code)."""
    from .influence_emoreg import INFLUENCES

    return tuple(INFLUENCES)


# ImageNet statistics: what most backbones (ResNet, ConvNeXt, Swin, DeiT, timm) were trained with.
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


# -- the checkpoint's own pipeline ------------------------------------------------------------------
# config.json declares the checkpoint's own pipeline, so that `pipeline("emoreg-image-classification",
# model=..., trust_remote_code=True)` works without the emoreg_hf package (see pipeline_emoreg.py).
PIPELINE_TASK = "emoreg-image-classification"


def default_custom_pipelines() -> dict:
    """The `custom_pipelines` entry every EmoReg config.json carries (transformers' custom-pipeline format)."""
    return {
        PIPELINE_TASK: {
            "impl": "pipeline_emoreg.EmoRegImageClassificationPipeline",
            "pt": ["AutoModelForImageClassification"],
            "type": "image",
        }
    }


def pipeline_class():
    """The `emoreg-image-classification` pipeline class. Imported lazily (this file stays light); the relative
    import also makes `save_pretrained` copy `pipeline_emoreg.py` next to the weights, as transformers copies
    every file that a remote-code module imports relatively."""
    from .pipeline_emoreg import EmoRegImageClassificationPipeline

    return EmoRegImageClassificationPipeline


# -- EmoReg's options, declared once -------------------------------------------------------------------
# Each option's name, default, allowed values and help live here only: `EmoRegConfig` inherits them, the
# recipes' `FinetuneArguments` inherits them (so `-h` shows this help and a bad value is refused when the
# command line is parsed), and the run record stores `dataclasses.asdict(emoreg_options(args))`.


def _option(default: Any, help: str, *, choices=None, low: float = 0.0, high: float | None = None):
    """A dataclass field for one EmoReg option: its default, help, and allowed values (a tuple of words or
    a function returning one; otherwise a number in [low, high])."""
    return field(default=default, metadata={"help": help, "choices": choices, "low": low, "high": high})


@dataclass
class EmoRegOptions:
    """The regulation options of an EmoReg model (docs/method.md)."""

    influence: str = _option("concat", "How emotion enters the emotional response:", choices=influence_modes)
    regulation: str = _option("adaptive", "ρ:", choices=regulation_modes)
    rho_init: float = _option(0.5, "Initial regulation strength in [0, 1].", high=1.0)
    aux_loss_weight: float = _option(0.5, "Weight of ½(CE(z_N) + CE(z_E)).")
    affect_trainable: str = _option(
        "frozen", "The affective pathway in stage 2:", choices=AFFECT_TRAINABLE_MODES
    )
    affect_lr_scale: float = _option(0.1, "LR multiplier of a trainable affective pathway.")
    affect_norm: str = _option(
        "none",
        "`layernorm`: h_A and e(x) each pass their own LayerNorm before they enter the emotional response, so "
        "the scale of h_T cannot hide them:",
        choices=AFFECT_NORM_MODES,
    )

    # How an error names an option: `--rho_init 1.5` on the command line, `EmoRegConfig.rho_init=1.5` in a model.
    option_format: ClassVar[str] = "--{name} {value!r}"

    def __post_init__(self):
        self.check_emoreg_options()

    def check_emoreg_options(self) -> None:
        """The one validator of the options: a value outside its choices or bounds is a `ValueError` that
        names the option and what is allowed."""
        for option in dataclasses.fields(EmoRegOptions):
            value, meta = getattr(self, option.name), option.metadata
            shown = self.option_format.format(name=option.name, value=value)
            if meta["choices"] is not None:
                allowed = option_choices(option)
                if value not in allowed:
                    raise ValueError(f"{shown} is not valid; allowed values: {', '.join(allowed)}")
                continue
            low, high = meta["low"], meta["high"]
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or value < low or (high is not None and value > high):
                bounds = (
                    f"{option.name} >= {low:g}" if high is None else f"{low:g} <= {option.name} <= {high:g}"
                )
                raise ValueError(f"{shown} is not valid; allowed values: {bounds}")


def option_choices(option: dataclasses.Field) -> tuple[str, ...]:
    """The allowed words of a choice option (None for a numeric one)."""
    choices = option.metadata.get("choices")
    return choices() if isinstance(choices, Callable) else choices


def emoreg_options(source: Any) -> EmoRegOptions:
    """The EmoReg options of anything that carries them (recipe arguments, an `EmoRegConfig`), checked."""
    return EmoRegOptions(
        **{option.name: getattr(source, option.name) for option in dataclasses.fields(EmoRegOptions)}
    )


def _check_triplet(field: str, value) -> None:
    if value is None:
        return
    if len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
        raise ValueError(f"EmoRegConfig.{field} must be 3 numbers (one per RGB channel), got {value!r}")
    if field.endswith("_std") and any(v <= 0 for v in value):
        raise ValueError(f"EmoRegConfig.{field} must be positive, got {value!r}")


def _check_size(field: str, value) -> None:
    if value is None:
        return
    if len(value) != 2 or not all(isinstance(v, int) and v > 0 for v in value):
        raise ValueError(f"EmoRegConfig.{field} must be [height, width] in pixels, got {value!r}")


class EmoRegConfig(PreTrainedConfig, EmoRegOptions):
    r"""
    Configuration of [`EmoRegForImageClassification`].

    Args:
        task_config (`dict` or `PreTrainedConfig`): config of the task pathway `T` (any
            `AutoModelForImageClassification` family; its classifier is the non-emotional head `W_N`).
        affect_config (`dict` or `PreTrainedConfig`): config of the affective pathway `A`, pretrained on
            emotion labels; its own classifier gives the emotion distribution `e(x)` over `id2label`.
        influence (`str`): how emotion enters the emotional response: `concat` (`[h_T; h_A; e]`) or
            `film` (`h_T * (1 + gamma(e, h_A)) + beta(e, h_A)`).
        regulation (`str`): `fixed` (constant `rho_init`), `learned` (one scalar) or `adaptive` (per image).
        rho_init (`float`): initial regulation strength in [0, 1].
        aux_loss_weight (`float`): weight of `½ (CE(z_N, y) + CE(z_E, y))` added to the loss.
        affect_norm (`str`): `none`, or `layernorm`: `h_A` and `e` each pass their own LayerNorm before they
            enter the emotional response (concat or FiLM), so neither is drowned by the scale of `h_T`.
        affect_trainable (`str`): `frozen` (no gradients, eval mode) or `all` (trained, scaled LR).
        affect_lr_scale (`float`): learning-rate multiplier of the affective pathway when `all`.
        task_image_size, task_image_mean, task_image_std: the input the task pathway expects
            (what the saved image processor produces).
        affect_image_size, affect_image_mean, affect_image_std: what the affective pathway was trained on;
            `forward` converts the task input to it when they differ.
        affect_image_color_mode (`str`): `rgb` or `grayscale` (a pathway trained on grayscale faces is given
            the luminance of the task image, copied to three channels); None reads as `rgb`.
        custom_pipelines (`dict`): pipelines declared to `transformers.pipeline`; by default
            `emoreg-image-classification`, whose code (`pipeline_emoreg.py`) is saved with the checkpoint.
    """

    model_type = "emoreg"
    sub_configs_defaults = {
        "task_config": SubConfigSpec(config_class=AutoConfig, model_type="vit"),
        "affect_config": SubConfigSpec(config_class=AutoConfig, model_type="vit"),
    }

    option_format = "EmoRegConfig.{name}={value!r}"

    task_config: dict | PreTrainedConfig | None = None
    affect_config: dict | PreTrainedConfig | None = None
    # influence, regulation, rho_init, aux_loss_weight, affect_trainable, affect_lr_scale, affect_norm: EmoRegOptions
    task_image_size: list[int] | None = None
    task_image_mean: list[float] | None = None
    task_image_std: list[float] | None = None
    affect_image_size: list[int] | None = None
    affect_image_mean: list[float] | None = None
    affect_image_std: list[float] | None = None
    affect_image_color_mode: str | None = None
    custom_pipelines: dict | None = None  # None means default_custom_pipelines()

    def __post_init__(self, **kwargs):
        labels_given = self.id2label is not None or kwargs.get("num_labels") is not None
        super().__post_init__(**kwargs)
        if self.custom_pipelines is None:
            self.custom_pipelines = default_custom_pipelines()
        n_task = self.task_config.num_labels
        if not labels_given:  # the task classes are the task pathway's classes
            self.id2label = {int(k): v for k, v in self.task_config.id2label.items()}
            self.label2id = self.task_config.label2id or {v: k for k, v in self.id2label.items()}
        elif self.num_labels != n_task:
            raise ValueError(
                f"EmoRegConfig has num_labels={self.num_labels} but its task_config has num_labels={n_task}; "
                "they must match (the task pathway's classifier is the non-emotional head)"
            )
        self.check_emoreg_options()
        if self.affect_image_color_mode is not None and self.affect_image_color_mode not in COLOR_MODES:
            raise ValueError(
                f"EmoRegConfig.affect_image_color_mode={self.affect_image_color_mode!r} is not valid; allowed "
                f"values: {', '.join(COLOR_MODES)}"
            )
        for prefix in ("task", "affect"):
            _check_size(f"{prefix}_image_size", getattr(self, f"{prefix}_image_size"))
            _check_triplet(f"{prefix}_image_mean", getattr(self, f"{prefix}_image_mean"))
            _check_triplet(f"{prefix}_image_std", getattr(self, f"{prefix}_image_std"))
        if self.affect_config.num_labels < 2:
            raise ValueError(
                "EmoRegConfig.affect_config must have an emotion classifier (num_labels >= 2, one per emotion), "
                f"got num_labels={self.affect_config.num_labels}"
            )

    @property
    def emotion_labels(self) -> list[str]:
        """Emotion names of the affective pathway's own head, in the order of `emotion_probs`."""
        id2label = self.affect_config.id2label
        return [id2label[i] for i in range(len(id2label))]

    @property
    def affect_grayscale(self) -> bool:
        """True when the affective pathway was trained on grayscale images (stage 1's `input_color_mode`)."""
        return self.affect_image_color_mode == "grayscale"

    @property
    def converts_affect_input(self) -> bool:
        """True when the two pathways were trained on different input size, normalisation or colour mode."""
        return self.affect_grayscale or any(
            getattr(self, f"affect_image_{k}") is not None
            and list(getattr(self, f"affect_image_{k}")) != list(getattr(self, f"task_image_{k}") or [])
            for k in ("size", "mean", "std")
        )


__all__ = [
    "AFFECT_NORM_MODES",
    "COLOR_MODES",
    "LUMA_WEIGHTS",
    "PIPELINE_TASK",
    "EmoRegConfig",
    "EmoRegOptions",
    "default_custom_pipelines",
    "emoreg_options",
    "influence_modes",
    "option_choices",
    "pipeline_class",
    "regulation_modes",
]
