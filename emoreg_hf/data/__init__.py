"""Data layer: affective mixtures and target data sets through ``datasets``, the loader/device split of
the input path (uint8 on the host, resize + normalise on the device), and the embedded synthetic demo."""

from .demo import DEMO_NAMES, ensure_demo
from .sources import (
    TARGET_PRESETS,
    SourceSpec,
    check_sources_available,
    load_affective_mixture,
    load_target_dataset,
    missing_sources,
)
from .transforms import (
    AUGMENTATIONS,
    Collator,
    DeviceFinisher,
    LoaderTransform,
    build_image_processor,
    infer_working_size,
)

__all__ = [
    "AUGMENTATIONS",
    "DEMO_NAMES",
    "TARGET_PRESETS",
    "Collator",
    "DeviceFinisher",
    "LoaderTransform",
    "SourceSpec",
    "build_image_processor",
    "check_sources_available",
    "ensure_demo",
    "infer_working_size",
    "load_affective_mixture",
    "load_target_dataset",
    "missing_sources",
]
