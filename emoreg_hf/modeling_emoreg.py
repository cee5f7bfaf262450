"""EmoReg: a task pathway and an affective pathway whose two responses are blended by a regulator.

    z_N = W_N · h_T                      (the task backbone's own classifier)
    z_E = W_E · influence(h_T, h_A, e)   (concat: [h_T; h_A; e] | film: h_T ⊙ (1 + γ) + β)
    z   = (1 − ρ) · z_N + ρ · z_E        (ρ fixed | learned scalar | adaptive per image: the weight of
                                          z_E's logits, not a measure of how much emotion was used)
    L   = CE(z, y) + aux_loss_weight · ½ (CE(z_N, y) + CE(z_E, y))

This file travels to the Hub as remote code; it imports only torch, transformers and its siblings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModelForImageClassification, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import ImageClassifierOutput

from .backbones import (
    _affect_pixels,
    _image_classifier_from_config,
    _processor_geometry,
    classify,
    feature_dim,
    pooled_features,
    present_no_split_modules,
)
from .configuration_emoreg import EmoRegConfig
from .configuration_small_resnet import SmallResNetConfig
from .influence_emoreg import INFLUENCES, InfluenceMode
from .modeling_small_resnet import SmallResNetForImageClassification
from .regulation_emoreg import REGULATIONS, RegulationMode

# The small-image ResNet as a pathway (see configuration_emoreg.py); keyed by the config class, so the
# package's and a remote-code copy's classes each map to their own model class.
AutoModelForImageClassification.register(SmallResNetConfig, SmallResNetForImageClassification, exist_ok=True)


@dataclass
class EmoRegImageClassifierOutput(ImageClassifierOutput):
    """Regulated logits plus what the model felt (`emotion_probs`), the weight ρ of the emotional response's
    logits (`regulation`; how much emotion *changed* the answer is measured by the reliance figures, see
    docs/method.md), both responses, and the pooled features of both pathways (`task_features` h_T,
    `affect_features` h_A), from which `respond` recomputes the output with h_A and e(x) swapped."""

    regulation: torch.Tensor | None = None
    emotion_probs: torch.Tensor | None = None
    logits_non_emotional: torch.Tensor | None = None
    logits_emotional: torch.Tensor | None = None
    task_features: torch.Tensor | None = None
    affect_features: torch.Tensor | None = None


class EmoRegResponses(NamedTuple):
    """What `EmoRegForImageClassification.respond` computes from the pooled features."""

    logits: torch.Tensor
    regulation: torch.Tensor
    logits_non_emotional: torch.Tensor
    logits_emotional: torch.Tensor


class EmoRegPreTrainedModel(PreTrainedModel):
    config_class = EmoRegConfig
    base_model_prefix = "emoreg"
    main_input_name = "pixel_values"
    input_modalities = "image"
    accepts_loss_kwargs = False  # the loss is a per-batch mean; Trainer scales it for gradient accumulation
    # delegated to the pathways that train (_set_gradient_checkpointing)
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Heads start small; the regulation starts at ρ = rho_init; FiLM starts as the identity."""
        cfg = self.config
        if REGULATIONS[cfg.regulation].init(self, module, cfg.rho_init):
            return
        if INFLUENCES[cfg.influence].init(self, module):
            return
        if module is getattr(self, "affect_norm", None) or module is getattr(self, "emotion_norm", None):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                init.zeros_(module.bias)


class EmoRegForImageClassification(EmoRegPreTrainedModel):
    """Two-pathway image classifier with emotional regulation (arXiv:2606.13081; emoreg-hf's docs/method.md)."""

    def __init__(
        self, config: EmoRegConfig, task_model: nn.Module | None = None, affect_model: nn.Module | None = None
    ):
        super().__init__(config)
        self.task_model = task_model or _image_classifier_from_config(config.task_config)
        self.affect_model = affect_model or _image_classifier_from_config(config.affect_config)
        d_task, d_affect = feature_dim(self.task_model), feature_dim(self.affect_model)
        n_emotions, n_labels = config.affect_config.num_labels, config.task_config.num_labels
        layernorm = config.affect_norm == "layernorm"
        self.affect_norm = nn.LayerNorm(d_affect) if layernorm else None
        self.emotion_norm = nn.LayerNorm(n_emotions) if layernorm else None
        self.influence_mode.build(
            self, d_task, d_affect, n_emotions, n_labels
        )  # film (or None), emotional_head
        self.regulator, self.rho_logit = None, None  # the regulation mode adds the ones it uses
        self.regulation_mode.build(self, d_task, n_emotions)
        self.post_init()
        self._no_split_modules = present_no_split_modules(self)
        self._apply_affect_trainable()

    @property
    def regulation_mode(self) -> RegulationMode:
        return REGULATIONS[self.config.regulation]

    @property
    def influence_mode(self) -> InfluenceMode:
        return INFLUENCES[self.config.influence]

    # -- construction ---------------------------------------------------------------------------------

    @classmethod
    def from_backbones(
        cls,
        task_model_name_or_path: str | None,
        affect_model_name_or_path: str,
        *,
        num_labels: int,
        id2label: dict[int, str],
        label2id: dict[str, int],
        task_config=None,
        **emoreg_options,
    ) -> EmoRegForImageClassification:
        """Build from two checkpoints (Hub ids or local dirs); `task_model_name_or_path=None` + `task_config`
        builds the task pathway from scratch. Image geometry is read from each checkpoint's processor, the
        affective pathway's colour mode from its config (`input_color_mode`, written by stage 1)."""
        if len(id2label) != num_labels or len(label2id) != num_labels:
            raise ValueError(
                f"num_labels={num_labels} does not match id2label ({len(id2label)} names) / label2id ({len(label2id)})"
            )
        id2label = {int(k): v for k, v in id2label.items()}
        labels = {"num_labels": num_labels, "id2label": id2label, "label2id": label2id}
        if task_model_name_or_path is not None:
            task = AutoModelForImageClassification.from_pretrained(
                task_model_name_or_path, ignore_mismatched_sizes=True, **labels
            )
            geometry = _processor_geometry(task_model_name_or_path)
        elif task_config is not None:
            task_config = task_config.__class__.from_dict({**task_config.to_dict(), **labels})
            task = _image_classifier_from_config(task_config)
            geometry = {}
        else:
            raise ValueError(
                "give task_model_name_or_path (a checkpoint) or task_config (to build from scratch)"
            )
        affect = AutoModelForImageClassification.from_pretrained(affect_model_name_or_path)
        for key, value in geometry.items():
            emoreg_options.setdefault(f"task_image_{key}", value)
        for key, value in _processor_geometry(affect_model_name_or_path).items():
            emoreg_options.setdefault(f"affect_image_{key}", value)
        # What stage 1 recorded about its input (recipes/pretrain.py): the pathway is fed the same by default.
        if getattr(affect.config, "input_size", None) is not None:
            emoreg_options.setdefault("affect_image_size", list(affect.config.input_size))
        if emoreg_options.get("affect_image_color_mode") is None:
            emoreg_options["affect_image_color_mode"] = getattr(affect.config, "input_color_mode", None)
        config = EmoRegConfig(
            task_config=task.config,
            affect_config=affect.config,
            id2label=id2label,
            label2id=label2id,
            **emoreg_options,
        )
        return cls(config, task_model=task, affect_model=affect)

    # -- training helpers -----------------------------------------------------------------------------

    def reset_affective_pathway(self) -> None:
        """Replace the affective pathway by a randomly initialised one of the same architecture: the
        no-pretraining control (same compute, no emotional experience)."""
        self.affect_model = _image_classifier_from_config(self.config.affect_config)
        self._apply_affect_trainable()

    def _apply_affect_trainable(self) -> None:
        frozen = self.config.affect_trainable == "frozen"
        self.affect_model.requires_grad_(not frozen)
        if frozen:
            self.affect_model.eval()

    def train(self, mode: bool = True):
        """A frozen affective pathway stays in eval mode (no dropout, no BatchNorm statistic updates) and
        without gradients, also after `from_pretrained` (which makes new parameters, and ends with `eval()`)."""
        super().train(mode)
        if self.config.affect_trainable == "frozen":
            self.affect_model.requires_grad_(False)
            self.affect_model.eval()
        return self

    def save_pretrained(self, *args, **kwargs):
        """Saved as its own class, with its own code files and `auto_map`, also when FSDP2's `fully_shard`
        has given this instance a class of its own (a subclass defined in torch, whose source files
        transformers would otherwise copy into the folder as the model's code)."""
        if not torch.distributed.is_available():
            return super().save_pretrained(*args, **kwargs)
        from torch.distributed.fsdp import FSDPModule

        sharded = type(self)
        if not isinstance(self, FSDPModule):
            return super().save_pretrained(*args, **kwargs)
        self.__class__ = next(c for c in sharded.__mro__[1:] if not issubclass(c, FSDPModule))
        try:
            return super().save_pretrained(*args, **kwargs)
        finally:
            self.__class__ = sharded

    def _set_gradient_checkpointing(
        self, enable: bool = True, gradient_checkpointing_func=None, every_n_layers=1
    ):
        """Activation checkpointing, delegated to the pathways that train: the task pathway and, when
        `affect_trainable="all"`, the affective one. A frozen pathway runs without gradients, so it keeps no
        activations to recompute and needs none. Disabling is never refused: it turns checkpointing off in
        every pathway that has it."""
        pathways = {"task": self.task_model}
        if self.config.affect_trainable == "all" or not enable:
            pathways["affective"] = self.affect_model
        for name, pathway in pathways.items():
            if not getattr(pathway, "supports_gradient_checkpointing", False):
                if not enable:
                    continue
                raise ValueError(
                    f"EmoReg's {name} pathway ({type(pathway).__name__}, model_type="
                    f"{pathway.config.model_type!r}) does not support activation checkpointing; train without "
                    "it, or use a family that has it (ViT, DeiT, Swin, or a timm model through TimmWrapperConfig)"
                )
            kwargs = (
                {}
                if gradient_checkpointing_func is None
                else {"gradient_checkpointing_func": gradient_checkpointing_func}
            )
            pathway._set_gradient_checkpointing(enable=enable, every_n_layers=every_n_layers, **kwargs)

    def get_input_embeddings(self) -> None:
        """None: two pathways, no single input embedding (FSDP shards each pathway's own layers instead)."""
        return None

    @property
    def is_activation_checkpointing(self) -> bool:
        """Also true when a timm pathway checkpoints: timm flags its modules `grad_checkpointing`, which
        transformers' check (`gradient_checkpointing` flags) does not see, so Trainer would otherwise take a
        checkpointed timm EmoReg for an unchecked one (DDP's `find_unused_parameters`)."""
        return super().is_activation_checkpointing or any(
            getattr(module, "grad_checkpointing", False) is True for module in self.modules()
        )

    def optimizer_param_groups(self, learning_rate: float, weight_decay: float = 0.0) -> list[dict]:
        """Parameter groups for an optimizer: the affective pathway gets `learning_rate * affect_lr_scale`;
        biases, norms and the regulation scalar get no weight decay."""
        groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            is_affect = name.startswith("affect_model.")
            decays = param.ndim >= 2
            groups.setdefault((is_affect, decays), []).append(param)
        scale = self.config.affect_lr_scale
        return [
            {
                "params": params,
                "lr": learning_rate * (scale if is_affect else 1.0),
                "weight_decay": weight_decay if decays else 0.0,
            }
            for (is_affect, decays), params in sorted(groups.items())
        ]

    # -- forward --------------------------------------------------------------------------------------

    def _check_pixels(self, pixel_values: torch.Tensor) -> None:
        if pixel_values is None or pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            shape = None if pixel_values is None else tuple(pixel_values.shape)
            raise ValueError(f"EmoReg expects pixel_values of shape (batch, 3, height, width), got {shape}")
        if not pixel_values.is_floating_point():
            raise ValueError(
                f"EmoReg expects float pixel_values, normalised by the checkpoint's image processor; got "
                f"{pixel_values.dtype}"
            )
        if pixel_values.dtype != self.dtype and not torch.is_autocast_enabled(pixel_values.device.type):
            raise ValueError(
                f"EmoReg's weights are {self.dtype} but pixel_values are {pixel_values.dtype}: cast the input "
                "with pixel_values.to(model.dtype), load the model in that dtype, or run under torch.autocast"
            )
        size = self.config.task_image_size
        if size is not None and list(pixel_values.shape[-2:]) != list(size):
            raise ValueError(
                f"EmoReg's task pathway expects {size[0]}x{size[1]} inputs (config.task_image_size), got "
                f"{pixel_values.shape[-2]}x{pixel_values.shape[-1]}; preprocess with the checkpoint's image processor"
            )

    def _check_labels(self, labels: torch.Tensor) -> None:
        """Class ids in [0, num_labels) (or soft targets of that width): a clear error instead of an index
        error on CPU or a device-side assert on GPU."""
        n = self.config.num_labels
        if labels.is_floating_point():
            if labels.ndim != 2 or labels.shape[-1] != n:
                raise ValueError(
                    f"soft labels must be (batch, {n}) for the {n} task classes, got {tuple(labels.shape)}"
                )
        elif labels.numel() and not torch.compiler.is_compiling():
            low, high = int(labels.min()), int(labels.max())
            if low < 0 or high >= n:
                raise ValueError(
                    f"labels must be class ids in [0, {n}) for the {n} task classes, got {low}..{high}"
                )

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs,
    ) -> EmoRegImageClassifierOutput:
        """`label_smoothing=` (a keyword, default 0) and `class_weights=` (per-class weights, default None)
        apply to every cross-entropy term of the loss (EmoRegTrainer passes its `label_smoothing_factor` and,
        in training, the run's class weights). They are read from `**kwargs` on purpose: Trainer
        takes every forward parameter whose name contains "label" for a label column
        (`transformers.utils.find_labels`), and would then never see labels in an evaluation batch."""
        label_smoothing = float(kwargs.pop("label_smoothing", 0.0) or 0.0)
        class_weights = kwargs.pop("class_weights", None)  # per-class weights of every CE term, or None
        self._check_pixels(pixel_values)
        cfg = self.config
        h_task = pooled_features(self.task_model, pixel_values)

        affect_pixels = _affect_pixels(cfg, pixel_values)
        with torch.set_grad_enabled(torch.is_grad_enabled() and cfg.affect_trainable == "all"):
            h_affect = pooled_features(self.affect_model, affect_pixels)
            emotion_logits = classify(self.affect_model, h_affect)
        emotion_probs = emotion_logits.float().softmax(-1).to(h_task.dtype)
        logits, rho, logits_non_emotional, logits_emotional = self.respond(h_task, h_affect, emotion_probs)

        loss = None
        if labels is not None:
            self._check_labels(labels)
            ce = dict(weight=class_weights, label_smoothing=label_smoothing)
            loss = F.cross_entropy(logits.float(), labels, **ce)
            if cfg.aux_loss_weight > 0:
                aux = F.cross_entropy(logits_non_emotional.float(), labels, **ce) + F.cross_entropy(
                    logits_emotional.float(), labels, **ce
                )
                loss = loss + cfg.aux_loss_weight * 0.5 * aux
        return EmoRegImageClassifierOutput(
            loss=loss,
            logits=logits,
            regulation=rho,
            emotion_probs=emotion_probs,
            logits_non_emotional=logits_non_emotional,
            logits_emotional=logits_emotional,
            task_features=h_task,
            affect_features=h_affect,
        )

    def respond(
        self, h_task: torch.Tensor, h_affect: torch.Tensor, emotion_probs: torch.Tensor
    ) -> EmoRegResponses:
        """Both responses and their regulated blend from the pooled features h_T, h_A and e(x): everything
        `forward` computes after the two pathways. Called with h_A and e(x) permuted across images or
        replaced by their mean, it measures how much the output relies on them (`evaluation.affect_reliance`)."""
        logits_non_emotional = classify(self.task_model, h_task)
        affect, emotion = h_affect, emotion_probs
        if self.affect_norm is not None:
            affect, emotion = self.affect_norm(h_affect), self.emotion_norm(emotion_probs)
        logits_emotional = self.emotional_head(self.influence_mode.influence(self, h_task, affect, emotion))
        rho = self.regulation_mode.rho(self, h_task, emotion_probs)
        logits = (1 - rho)[:, None] * logits_non_emotional + rho[:, None] * logits_emotional
        return EmoRegResponses(logits, rho, logits_non_emotional, logits_emotional)


__all__ = [
    "REGULATIONS",
    "EmoRegForImageClassification",
    "EmoRegImageClassifierOutput",
    "EmoRegPreTrainedModel",
    "EmoRegResponses",
    "RegulationMode",
]
