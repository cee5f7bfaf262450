"""Data layer: the shared schema and codes (`schema`), sources as data (`specs`), loading one source
(`sources`) and bringing its splits to the schema (`prepare`), FER+ votes as labels (`ferplus`), affective
mixtures (`mixture`), target data sets (`targets`), streamed training splits (`streaming`), the
loader/device split of the input path (`transforms`: uint8 on the host, resize + normalise on the device),
and the embedded synthetic demo (`demo`)."""

from .demo import DEMO_NAMES, ensure_demo
from .mixture import load_affective_mixture
from .specs import SourceSpec, check_sources_available, is_synthetic, missing_sources
from .stage1 import load_stage1_data
from .targets import TARGET_PRESETS, load_target_dataset, resolve_target_spec
from .transforms import (
    AUGMENTATIONS,
    Collator,
    DeviceFinisher,
    LoaderTransform,
    build_image_processor,
    infer_color_mode,
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
    "infer_color_mode",
    "infer_working_size",
    "is_synthetic",
    "load_affective_mixture",
    "load_stage1_data",
    "load_target_dataset",
    "missing_sources",
    "resolve_target_spec",
]
