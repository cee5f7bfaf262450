"""A ResNet whose stem fits small images: HF ResNet with the stem's kernel, stride and max-pool configurable.

HF's ResNet (and timm's) always opens with a 7x7 stride-2 convolution and a stride-2 max-pool, which turns
a 32-px CIFAR image or a 48-px face into an 8x8 or 12x12 map before the first block. The usual small-image
ResNet (He et al. 2016, section 4.2) opens with one 3x3 stride-1 convolution and no pooling; these three
fields choose between the two (`stem_kernel_size=7, stem_stride=2, stem_pool=True` is HF's ResNet).

This file travels to the Hub as remote code (with stage-1 checkpoints and with EmoReg checkpoints whose
pathway is this family), so it imports only `transformers`.
"""

from __future__ import annotations

from transformers import ResNetConfig


class SmallResNetConfig(ResNetConfig):
    r"""
    [`ResNetConfig`] plus the stem:

    Args:
        stem_kernel_size (`int`): kernel of the stem convolution (3; HF ResNet: 7).
        stem_stride (`int`): its stride (1; HF ResNet: 2).
        stem_pool (`bool`): a 3x3 stride-2 max-pool after it (False; HF ResNet: True).
    """

    model_type = "small_resnet"

    stem_kernel_size: int = 3
    stem_stride: int = 1
    stem_pool: bool = False

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        for name in ("stem_kernel_size", "stem_stride"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"SmallResNetConfig.{name} must be a positive int, got {value!r}")


__all__ = ["SmallResNetConfig"]
