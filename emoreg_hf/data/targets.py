"""Target data sets: presets in the Hub schemas (`uoft-cs/cifar10`, `uoft-cs/cifar100`, the demo) or any
source spec, with train / validation / test splits; their own class names are kept."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

import datasets

from .ferplus import SOFT_MODES
from .prepare import check_policy, label_vocabulary, pick_column, prepare_split
from .schema import SHUFFLE_BUFFER
from .sources import declared_class_names, find_validation, load_with_train_split
from .specs import SOURCE_PRESETS, SourceSpec
from .splits import carve_validation, column_values, read_into_memory, rows_dropped, stream_validation_rows

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
        if preset in TARGET_PRESETS:
            spec = {**TARGET_PRESETS[preset], **{k: v for k, v in spec.items() if k != "preset"}}
        elif preset not in SOURCE_PRESETS:  # a source preset (fer2013) is a target too
            raise ValueError(
                f"unknown target preset {preset!r}; available: {sorted(TARGET_PRESETS) + sorted(SOURCE_PRESETS)}"
            )
    resolved = SourceSpec.from_any(spec)
    if resolved.label_mode in SOFT_MODES:
        raise ValueError(
            f"target {resolved.display_name!r}: label_mode {resolved.label_mode!r} gives soft training targets, "
            "which only stage 1's affective sources take; a target data set needs `label_mode: majority`"
        )
    return resolved


def target_classes(source_names: list[str], label_map: dict) -> list[str]:
    """A target's classes among a split's label values: all of them, or with a `label_map` the values it
    names (it lists the classes, e.g. FER-2013's codes 0..6); a value it sends to null is no class."""
    if not label_map:
        return list(source_names)
    return [n for n in source_names if n in label_map and label_map[n] is not None]


def label_lookup(split_names: list[str], classes: list[str], label_map: dict, drop_unmapped: bool) -> dict:
    """A split's label values -> class ids for `sources.mapped_label`: a value outside the `label_map`
    (FER-2013's code 7, or `3.0` for `3`) is left out, so its row is refused by name (split, row, value),
    as a stage-1 source's would be, unless `drop_unmapped: true` drops and counts it."""
    lookup: dict = {n: classes.index(n) for n in split_names if n in classes}
    if label_map:
        # codes no training row has are no class (another split's rows of them were refused as unseen)
        lookup.update({n: classes.index(n) if n in classes else None for n in label_map})
        if drop_unmapped:
            lookup.update({n: None for n in split_names if n not in label_map})
    return lookup


def _aligned_names(src, split, names, train_split, train_names, ds, column) -> list[str]:
    """A split's own class names, checked against train's: the same names in another order are aligned by
    name (and said); names one split has that the other lacks are an error listing them."""
    if split == train_split or names == train_names:
        return names
    unseen = sorted(set(names) - set(train_names))
    absent = sorted(set(train_names) - set(names))
    declared = isinstance(ds.features[column], datasets.ClassLabel)
    if unseen or (absent and declared):
        raise ValueError(
            f"target {src!r}: splits {train_split!r} and {split!r} have different classes in column {column!r}: "
            f"only in {split!r}: {unseen or 'none'}; only in {train_split!r}: {absent or 'none'}. "
            "Both splits must name the same classes."
        )
    if declared:
        logger.warning(
            "target %r: split %r lists the classes in another order than %r; its labels are aligned by name",
            src,
            split,
            train_split,
        )
    return names


def classes_seen_in_training(
    splits: dict, src: str, drop_unseen: bool, stats: dict, split_names: dict | None = None
) -> dict:
    """The classes a model can learn are the ones train has rows of, whatever a ClassLabel declares.

    Fewer than 2 in train is refused. A validation or test row of a class train lacks (an image folder whose
    split folders spell a class differently: `datasets` unites the names of all splits) is refused, naming
    those classes per split, or dropped and counted (`drop_unseen_classes: true`). Declared classes no row
    of train has are left out of the label space (said in a warning), so the model and its card name only
    classes it was trained on."""
    names = splits["train"].features["label"].names
    train_counts = Counter(column_values(splits["train"], "label").tolist())
    seen = [i for i in range(len(names)) if train_counts.get(i)]
    if len(seen) < 2:
        raise ValueError(
            f"target {src!r}: a classifier needs at least 2 classes; the training rows have "
            f"{len(seen)} ({[names[i] for i in seen]}) although the label column declares {len(names)}"
        )
    unseen_rows = {}
    for role, split in splits.items():
        if role == "train":
            continue
        counts = Counter(column_values(split, "label").tolist())
        unseen = {names[i]: n for i, n in sorted(counts.items()) if i not in train_counts}
        if unseen:
            unseen_rows[role] = unseen
    if unseen_rows and not drop_unseen:
        lines = [f"  {role}: {unseen} (class: rows)" for role, unseen in unseen_rows.items()]
        raise ValueError(
            f"target {src!r}: these splits have classes that no training row has, so a model could only get "
            "them wrong:\n"
            + "\n".join(lines)
            + "\nFix the class names (e.g. one spelling per class folder), "
            "or set `drop_unseen_classes: true` on the data set to drop those rows (they are counted)."
        )
    for role in unseen_rows:
        splits[role] = splits[role].filter(lambda y: y in train_counts, input_columns="label")
        # counted under the source's name of the split, as its other counts are (`split_names`: role -> name)
        stats.setdefault((split_names or {}).get(role, role), {})["unseen_class_dropped"] = sum(
            unseen_rows[role].values()
        )
        logger.warning(
            "target %r: dropped %d %s row(s) of classes train lacks: %s", src,
            sum(unseen_rows[role].values()), role, unseen_rows[role],
        )  # fmt: skip
    if len(seen) < len(names):
        logger.warning(
            "target %r: the label column declares %d classes, the training rows have %d; the model predicts "
            "those %d (no training row: %s)", src, len(names), len(seen), len(seen),
            [n for i, n in enumerate(names) if i not in train_counts],
        )  # fmt: skip
        splits = {role: keep_classes(split, seen) for role, split in splits.items()}
    return splits


def keep_classes(split: datasets.Dataset, kept: list[int]) -> datasets.Dataset:
    """`split` relabelled onto the classes `kept` (old ids, in order): class `kept[j]` becomes id `j`."""
    names = split.features["label"].names
    new_id = {old: new for new, old in enumerate(kept)}
    features = split.features.copy()
    features["label"] = datasets.ClassLabel(names=[names[i] for i in kept])
    return split.map(
        lambda labels: {"label": [new_id[y] for y in labels]},
        batched=True,
        input_columns="label",
        features=features,
    )


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
    if it has one, else a stratified, seeded one is carved from train; ``test`` is left untouched. A streamed
    target (``streaming: true``) streams its train split only (see ``streaming.StreamedTrainSplit``); its
    evaluation splits are read into memory (without a validation split: the first rows of train).
    """
    check_policy(on_bad_image)
    spec = resolve_target_spec(spec)
    src = spec.display_name
    absent = [p for p in spec.local_paths() if not os.path.exists(os.path.expanduser(p))]
    if absent:
        raise FileNotFoundError(
            f"target {src!r}: no such local folder or file {', '.join(map(repr, absent))} (in {os.getcwd()})"
        )
    loaded, splits, train_split = load_with_train_split(spec, "target")
    label_col = pick_column(spec, loaded[train_split].features, "label")
    val_split = find_validation(spec, splits)
    wanted = {"train": train_split, "validation": val_split, "test": "test" if "test" in splits else None}
    wanted = {role: split for role, split in wanted.items() if split is not None}
    if spec.streaming:  # only train streams; evaluation splits are read into memory (a known length)
        loaded = dict(loaded)
        if not isinstance(loaded[train_split].features[label_col], datasets.ClassLabel):
            raise ValueError(
                f"target {src!r}: a streamed target needs a ClassLabel column {label_col!r} (its classes must "
                "be known before the stream is read); set `streaming: false` or store the labels as ClassLabel"
            )
        image_col = pick_column(spec, loaded[train_split].features, "image")
        for role, split in wanted.items():
            if role != "train":
                loaded[split] = read_into_memory(loaded[split], image_col)
        if "validation" not in wanted:
            n = stream_validation_rows(loaded[train_split], validation_split_size, spec)
            wanted["validation"] = first_rows = f"{train_split}[:{n}]"
            loaded[first_rows] = read_into_memory(loaded[train_split], image_col, n)
            loaded[train_split] = loaded[train_split].skip(n)
    per_split = {split: label_vocabulary(loaded[split], label_col, spec) for split in wanted.values()}
    if isinstance(loaded[train_split].features[label_col], datasets.ClassLabel) and not spec.streaming:
        per_split.update({s: n for s, n in declared_class_names(spec, label_col).items() if s in per_split})
    label_map = {str(k): v for k, v in (spec.label_map or {}).items()}
    classes = target_classes(per_split[train_split], label_map)
    unmapped = label_map and any(n not in label_map for n in per_split[train_split])
    if len(classes) < 2 and not (unmapped and not spec.drop_unmapped):  # else: the row is named below
        raise ValueError(
            f"target {src!r}: a classifier needs at least 2 classes; split {train_split!r} has "
            f"{len(classes)} in column {label_col!r} ({classes})"
        )
    class_label = datasets.ClassLabel(names=[str(label_map.get(n, n)) for n in classes])
    stats: dict = {}
    out = {}
    for role, split in wanted.items():
        _aligned_names(
            src,
            split,
            target_classes(per_split[split], label_map),
            train_split,
            classes,
            loaded[split],
            label_col,
        )
        lookup = label_lookup(per_split[split], classes, label_map, spec.drop_unmapped)
        out[role] = prepare_split(
            loaded[split], spec, split, per_split[split], lookup, class_label, on_bad_image, stats
        )
    if spec.streaming:  # map-style training reshuffles every epoch; a stream goes through a buffer
        # The classes are the ClassLabel's: a stream's training rows cannot be counted before training.
        out["train"] = out["train"].shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
    else:
        out = classes_seen_in_training(out, src, spec.drop_unseen_classes, stats, wanted)
    if "validation" not in out:
        out["train"], out["validation"] = carve_validation(out["train"], validation_split_size, seed, src)
    bad = sum(s["bad_images"] or 0 for s in stats.values())
    if bad:
        logger.warning("target %r: skipped %d unreadable image(s): %s", src, bad, stats)
    unlabeled = {split: s["unlabeled_dropped"] for split, s in stats.items() if s.get("unlabeled_dropped")}
    if unlabeled:  # drop_unlabeled: said here, not hidden among unreadable images
        logger.warning(
            "target %r: dropped %d row(s) without a label (drop_unlabeled): %s",
            src,
            sum(unlabeled.values()),
            unlabeled,
        )
    result = datasets.DatasetDict(out)
    result.load_report = stats  # type: ignore[attr-defined]  # per split: rows_loaded, bad_images
    result.rows_dropped = rows_dropped(stats, wanted)  # type: ignore[attr-defined]  # for the run record
    if hasattr(loaded, "split_counts"):  # rows per value of the source's split column (FER-2013's Usage)
        result.split_counts = loaded.split_counts  # type: ignore[attr-defined]
        logger.info(
            "target %r: splits from column %r: %s", src, loaded.split_counts["column"], loaded.split_counts
        )
    return result
