"""Target data sets: presets in the Hub schemas (`uoft-cs/cifar10`, `uoft-cs/cifar100`, the demo) or any
source spec, with train / validation / test splits; their own class names are kept."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import datasets

from .sources import (
    SourceSpec,
    carve_validation,
    check_policy,
    find_validation,
    load_with_train_split,
    pick_column,
    prepare_split,
)

logger = logging.getLogger(__name__)

TARGET_PRESETS: dict[str, dict[str, Any]] = {
    "cifar10": {
        "path": "uoft-cs/cifar10",
        "image_column": "img",
        "label_column": "label",
        "source": "cifar10",
    },
    "cifar100": {
        "path": "uoft-cs/cifar100",
        "image_column": "img",
        "label_column": "fine_label",  # {"preset": "cifar100", "label_column": "coarse_label"} for 20 classes
        "source": "cifar100",
    },
    "demo": {
        "path": "demo:synthetic-target",
        "image_column": "img",
        "label_column": "label",
        "source": "synthetic-target",
    },
}


def resolve_target_spec(spec: str | Mapping | SourceSpec) -> SourceSpec:
    """A preset name (`cifar10`), `{"preset": ..., **overrides}` or any source spec, as a `SourceSpec`."""
    if isinstance(spec, str) and spec in TARGET_PRESETS:
        spec = dict(TARGET_PRESETS[spec])
    elif isinstance(spec, Mapping) and "preset" in spec:
        preset = spec["preset"]
        if preset not in TARGET_PRESETS:
            raise ValueError(f"unknown target preset {preset!r}; available: {sorted(TARGET_PRESETS)}")
        spec = {**TARGET_PRESETS[preset], **{k: v for k, v in spec.items() if k != "preset"}}
    return SourceSpec.from_any(spec)


def load_target_dataset(
    spec: str | Mapping | SourceSpec,
    *,
    validation_split_size: float = 0.1,
    seed: int = 42,
    on_bad_image: str = "error",
) -> datasets.DatasetDict:
    """A task data set with ``train``, ``validation`` and (if it has one) ``test``.

    ``spec``: a preset (``"cifar10"``, ``"cifar100"``, ``"demo"``), a dict ``{"preset": ..., **overrides}``
    (e.g. ``label_column: coarse_label``), or any source spec. The data set's own validation split is used
    if it has one, else a stratified, seeded one is carved from train; ``test`` is left untouched.
    """
    check_policy(on_bad_image)
    spec = resolve_target_spec(spec)
    src = spec.display_name
    if spec.streaming:
        raise ValueError(
            f"target {src!r}: streaming targets are not supported (evaluation needs map-style splits)"
        )
    loaded, splits, train_split = load_with_train_split(spec, "target")
    label_col = pick_column(spec, loaded[train_split].features, "label")
    feature = loaded[train_split].features[label_col]
    if isinstance(feature, datasets.ClassLabel):
        source_names, lookup = list(feature.names), None
    else:  # string or int labels without names: sorted distinct values of every split
        source_names = sorted({str(v) for s in splits for v in loaded[s].unique(label_col)})
        lookup = {n: i for i, n in enumerate(source_names)}
    names = [str((spec.label_map or {}).get(n, n)) for n in source_names]  # label_map renames classes
    class_label = datasets.ClassLabel(names=names)
    val_split = find_validation(spec, splits)
    stats: dict = {}
    wanted = {"train": train_split, "validation": val_split, "test": "test" if "test" in splits else None}
    out = {}
    for role, split in wanted.items():
        if split is None:
            continue
        out[role] = prepare_split(
            loaded[split], spec, split, source_names, lookup, class_label, on_bad_image, stats
        )
    if "validation" not in out:
        out["train"], out["validation"] = carve_validation(out["train"], validation_split_size, seed, src)
    bad = sum(s["bad_images"] or 0 for s in stats.values())
    if bad:
        logger.warning("target %r: skipped %d unreadable image(s): %s", src, bad, stats)
    result = datasets.DatasetDict(out)
    result.load_report = stats  # type: ignore[attr-defined]  # per split: rows_loaded, bad_images
    return result
