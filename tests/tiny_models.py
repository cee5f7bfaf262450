"""Tiny backbone configs shared by the tests: seconds on a CPU, same code paths as full-size models."""

from transformers import ConvNextConfig, DeiTConfig, ResNetConfig, SwinConfig, TimmWrapperConfig, ViTConfig
from transformers.image_processing_utils import BaseImageProcessor

EKMAN7 = ["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def labelled(names: list[str]) -> dict:
    return {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}


def vit_config(names=CIFAR10, image_size=32, **kw) -> ViTConfig:
    return ViTConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        **labelled(names),
        **kw,
    )


def resnet_config(names=EKMAN7, **kw) -> ResNetConfig:
    return ResNetConfig(
        embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", **labelled(names), **kw
    )


def family_configs(names=CIFAR10) -> dict:
    """One tiny config per supported AutoModelForImageClassification family."""
    return {
        "vit": vit_config(names),
        "deit": DeiTConfig(
            architectures=["DeiTForImageClassification"],
            image_size=32,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            **labelled(names),
        ),
        "resnet": resnet_config(names),
        "convnext": ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], **labelled(names)),
        "swin": SwinConfig(
            image_size=32,
            patch_size=4,
            embed_dim=8,
            depths=[1, 1],
            num_heads=[1, 2],
            window_size=4,
            **labelled(names),
        ),
        "timm_resnet": TimmWrapperConfig(architecture="resnet18", **labelled(names)),
        "timm_vit": TimmWrapperConfig(
            architecture="vit_tiny_patch16_224",
            model_args={"img_size": 32, "patch_size": 8, "depth": 2, "global_pool": "avg", "fc_norm": True},
            **labelled(names),
        ),
    }


def image_processor(size: int, mean, std) -> BaseImageProcessor:
    from transformers import ViTImageProcessor

    return ViTImageProcessor(size={"height": size, "width": size}, image_mean=list(mean), image_std=list(std))
