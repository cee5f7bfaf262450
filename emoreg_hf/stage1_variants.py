"""Stage-1 variants, each declared once: how an affective (stage-1) checkpoint was trained (`normal`,
`shuffled` emotion labels, `kmeans` cluster labels, or the `target` task's own classes), the flag it writes
into its checkpoint's config.json, and how a run's arguments, a checkpoint's config or a recorded
`controls` dict tell which variant it is. The registry's arms name these variants (`Arm.stage1`). This
module imports nothing from the package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class FromFinetune(str):
    """A stage-1 switch whose value is the finetune stage's value of the named key: the positive control
    trains stage 1 on the data set stage 2 fine-tunes on (the ablation runner resolves it)."""


@dataclass(frozen=True)
class Stage1Variant:
    """How a stage-1 (affective) checkpoint was trained. `switches` are pretrain keys (None: the key is unset;
    `FromFinetune`: set to a finetune value); a variant other than the normal one writes
    `checkpoint_flag: true` into its checkpoint's config.json, so stage 2 (and its record and card) knows
    which variant its affective pathway is."""

    name: str
    switches: dict[str, Any]
    checkpoint_flag: str | None = None
    permutes_emotion_labels: bool = False  # same images and compute, no emotion (the affect card says so)
    emotion_labels: bool = True  # learns the emotion label space (permuted or not); False: labels of its own


STAGE1_VARIANTS: dict[str, Stage1Variant] = {
    v.name: v
    for v in (
        Stage1Variant("normal", {"shuffle_labels": False}),
        Stage1Variant(
            "shuffled",
            {"shuffle_labels": True},
            checkpoint_flag="shuffled_emotion_labels",
            permutes_emotion_labels=True,
        ),
        # The learnable non-emotion control: the same images, schedule and compute, k-means cluster labels.
        Stage1Variant(
            "kmeans", {"kmeans_labels": True}, checkpoint_flag="kmeans_labels", emotion_labels=False
        ),
        # The positive control: the target data set's own training split and classes.
        Stage1Variant(
            "target",
            {"target_dataset": FromFinetune("dataset"), "affective_sources": None},
            checkpoint_flag="target_task_labels",
            emotion_labels=False,
        ),
    )
}
NORMAL_STAGE1 = "normal"


def stage1_variant_of(affect_config: Any) -> str | None:
    """The stage-1 variant an affective checkpoint's config declares (None when there is none)."""
    if affect_config is None:
        return None
    for variant in STAGE1_VARIANTS.values():
        if variant.checkpoint_flag and getattr(affect_config, variant.checkpoint_flag, False):
            return variant.name
    return NORMAL_STAGE1


def _holds(value: Any, switch: Any) -> bool:
    """A run's value (or recorded control) has a variant's switch: set at all for `FromFinetune`."""
    return bool(value) if isinstance(switch, FromFinetune) else value == switch


def stage1_checkpoint_flags(pretrain_args: Any) -> dict[str, bool]:
    """The flags a stage-1 checkpoint's config.json carries: each variant's, true when the run used it."""
    return {
        v.checkpoint_flag: all(
            _holds(getattr(pretrain_args, k), value) for k, value in v.switches.items() if value is not None
        )
        for v in STAGE1_VARIANTS.values()
        if v.checkpoint_flag
    }


def stage1_controls(pretrain_args: Any) -> dict[str, bool]:
    """`RunRecord.controls` of a stage-1 run: the switches of every variant but the normal one, as flags."""
    keys = [
        k
        for v in STAGE1_VARIANTS.values()
        if v.name != NORMAL_STAGE1
        for k, value in v.switches.items()
        if value is not None
    ]
    return {key: bool(getattr(pretrain_args, key)) for key in dict.fromkeys(keys)}


def stage1_variant(controls: Mapping[str, Any]) -> Stage1Variant:
    """The stage-1 variant a stage-1 run's recorded `controls` describe."""
    for variant in STAGE1_VARIANTS.values():
        if variant.name != NORMAL_STAGE1 and all(
            _holds(controls.get(k), v) for k, v in variant.switches.items() if v is not None
        ):
            return variant
    return STAGE1_VARIANTS[NORMAL_STAGE1]


__all__ = [
    "NORMAL_STAGE1",
    "STAGE1_VARIANTS",
    "FromFinetune",
    "Stage1Variant",
    "stage1_checkpoint_flags",
    "stage1_controls",
    "stage1_variant",
    "stage1_variant_of",
]
