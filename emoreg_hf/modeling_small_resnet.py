"""HF ResNet with a configurable stem (`SmallResNetConfig`): everything but the stem is transformers'
own ResNet code, so weights, initialisation, pooled features and the classifier behave the same.

This file travels to the Hub as remote code; it imports only torch, transformers and its configuration.
"""

from __future__ import annotations

from torch import Tensor, nn
from transformers.models.resnet.modeling_resnet import (
    ResNetConvLayer,
    ResNetEncoder,
    ResNetForImageClassification,
    ResNetModel,
    ResNetPreTrainedModel,
)

from .configuration_small_resnet import SmallResNetConfig


class SmallResNetEmbeddings(nn.Module):
    """The stem: one `stem_kernel_size` convolution at `stem_stride`, then an optional 3x3 stride-2 max-pool."""

    def __init__(self, config: SmallResNetConfig):
        super().__init__()
        self.embedder = ResNetConvLayer(
            config.num_channels,
            config.embedding_size,
            kernel_size=config.stem_kernel_size,
            stride=config.stem_stride,
            activation=config.hidden_act,
        )
        self.pooler = nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if config.stem_pool else nn.Identity()
        self.num_channels = config.num_channels

    def forward(self, pixel_values: Tensor) -> Tensor:
        if pixel_values.shape[1] != self.num_channels:
            raise ValueError(
                f"SmallResNet expects {self.num_channels} input channels (config.num_channels), got "
                f"{pixel_values.shape[1]}"
            )
        return self.pooler(self.embedder(pixel_values))


class SmallResNetPreTrainedModel(ResNetPreTrainedModel):
    config_class = SmallResNetConfig


class SmallResNetModel(SmallResNetPreTrainedModel, ResNetModel):
    def __init__(self, config: SmallResNetConfig):
        SmallResNetPreTrainedModel.__init__(self, config)
        self.embedder = SmallResNetEmbeddings(config)
        self.encoder = ResNetEncoder(config)
        self.pooler = nn.AdaptiveAvgPool2d((1, 1))
        self.post_init()


class SmallResNetForImageClassification(SmallResNetPreTrainedModel, ResNetForImageClassification):
    def __init__(self, config: SmallResNetConfig):
        SmallResNetPreTrainedModel.__init__(self, config)
        self.num_labels = config.num_labels
        self.resnet = SmallResNetModel(config)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(config.hidden_sizes[-1], config.num_labels) if config.num_labels > 0 else nn.Identity(),
        )
        self.post_init()


__all__ = ["SmallResNetForImageClassification", "SmallResNetModel", "SmallResNetPreTrainedModel"]
