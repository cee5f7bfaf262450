"""EmoReg configuration: two backbone sub-configs plus the regulation options (arXiv:2606.13081, as
emoreg-hf's docs/method.md defines them).

This file travels to the Hub as remote code next to `modeling_emoreg.py`, so it imports only
`transformers`.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

INFLUENCE_MODES = ("concat", "film")
REGULATION_MODES = ("fixed", "learned", "adaptive")
AFFECT_TRAINABLE_MODES = ("frozen", "all")

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


def _check_choice(field: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"EmoRegConfig.{field}={value!r} is not valid; allowed values: {', '.join(allowed)}")


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


class EmoRegConfig(PreTrainedConfig):
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
        affect_trainable (`str`): `frozen` (no gradients, eval mode) or `all` (trained, scaled LR).
        affect_lr_scale (`float`): learning-rate multiplier of the affective pathway when `all`.
        task_image_size, task_image_mean, task_image_std: the input the task pathway expects
            (what the saved image processor produces).
        affect_image_size, affect_image_mean, affect_image_std: what the affective pathway was trained on;
            `forward` converts the task input to it when they differ.
        custom_pipelines (`dict`): pipelines declared to `transformers.pipeline`; by default
            `emoreg-image-classification`, whose code (`pipeline_emoreg.py`) is saved with the checkpoint.
    """

    model_type = "emoreg"
    sub_configs_defaults = {
        "task_config": SubConfigSpec(config_class=AutoConfig, model_type="vit"),
        "affect_config": SubConfigSpec(config_class=AutoConfig, model_type="vit"),
    }

    task_config: dict | PreTrainedConfig | None = None
    affect_config: dict | PreTrainedConfig | None = None
    influence: str = "concat"
    regulation: str = "adaptive"
    rho_init: float = 0.5
    aux_loss_weight: float = 0.5
    affect_trainable: str = "frozen"
    affect_lr_scale: float = 0.1
    task_image_size: list[int] | None = None
    task_image_mean: list[float] | None = None
    task_image_std: list[float] | None = None
    affect_image_size: list[int] | None = None
    affect_image_mean: list[float] | None = None
    affect_image_std: list[float] | None = None
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
        _check_choice("influence", self.influence, INFLUENCE_MODES)
        _check_choice("regulation", self.regulation, REGULATION_MODES)
        _check_choice("affect_trainable", self.affect_trainable, AFFECT_TRAINABLE_MODES)
        if not isinstance(self.rho_init, (int, float)) or not 0.0 <= self.rho_init <= 1.0:
            raise ValueError(
                f"EmoRegConfig.rho_init={self.rho_init!r} is not valid; allowed values: 0 <= rho_init <= 1"
            )
        if not isinstance(self.aux_loss_weight, (int, float)) or self.aux_loss_weight < 0:
            raise ValueError(
                f"EmoRegConfig.aux_loss_weight={self.aux_loss_weight!r} is not valid; allowed values: >= 0"
            )
        if not isinstance(self.affect_lr_scale, (int, float)) or self.affect_lr_scale < 0:
            raise ValueError(
                f"EmoRegConfig.affect_lr_scale={self.affect_lr_scale!r} is not valid; allowed values: >= 0"
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
    def converts_affect_input(self) -> bool:
        """True when the two pathways were trained on different input size or normalisation."""
        return any(
            getattr(self, f"affect_image_{k}") is not None
            and list(getattr(self, f"affect_image_{k}")) != list(getattr(self, f"task_image_{k}") or [])
            for k in ("size", "mean", "std")
        )


__all__ = ["PIPELINE_TASK", "EmoRegConfig", "default_custom_pipelines", "pipeline_class"]
