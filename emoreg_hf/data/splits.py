"""Splits and label columns of a loaded source: carving a stratified validation split, the evaluation
splits of a streamed source, counting and permuting labels (the shuffled-emotion control)."""

from __future__ import annotations

import logging
import math
import os
from collections import Counter

import datasets
import numpy as np

logger = logging.getLogger(__name__)


def carve_validation(ds: datasets.Dataset, size: float, seed: int, source: str):
    """Stratified, seeded train/validation split; where a class is too rare to stratify, a random one that
    still keeps one training row of every class (a class carved wholly into validation would be one the
    model never sees, while validation and test score it)."""
    try:
        parts = ds.train_test_split(test_size=size, stratify_by_column="label", seed=seed)
        return parts["train"], parts["test"]
    except ValueError as err:
        logger.warning(
            "source %r: stratified validation split impossible (%s); using a random one that keeps a "
            "training row of every class",
            source,
            err,
        )
    order = np.random.default_rng(seed).permutation(len(ds))
    labels = np.asarray(ds["label"])[order]
    _, first = np.unique(labels, return_index=True)  # the first row of each class in the shuffled order
    kept = set(order[first].tolist())
    wanted = int(size) if size >= 1 else math.ceil(size * len(ds))
    pool = [int(i) for i in order if int(i) not in kept]
    validation = sorted(pool[: min(wanted, len(pool))])
    chosen = set(validation)
    return ds.select([i for i in range(len(ds)) if i not in chosen]), ds.select(validation)


def stream_validation_rows(ds: datasets.IterableDataset, size: float, spec) -> int:
    """How many first rows of a streamed source without a validation split become its validation split:
    `size` x the split's length where the data set states it (Hub metadata), else 500."""
    try:
        known = ds.info.splits[spec.split or "train"].num_examples
    except (AttributeError, KeyError, TypeError):
        known = None
    return int(size) if size >= 1 else (max(1, round(size * known)) if known else 500)


def read_into_memory(
    ds: datasets.IterableDataset, image_column: str, n: int | None = None
) -> datasets.Dataset:
    """The first `n` rows (all rows when None) of a streamed split as a map-style split, images still
    encoded: how a streamed source's evaluation splits are read (evaluation needs a known length)."""
    ds = ds.cast_column(image_column, datasets.Image(decode=False))
    rows = list(ds.take(n) if n is not None else ds)
    return datasets.Dataset.from_list(rows, features=ds.features)


def column_values(ds: datasets.Dataset, column: str) -> np.ndarray:
    """One column as numpy, without decoding the others (respects select/split index mappings)."""
    if len(ds) == 0:
        return np.array([])
    return np.asarray(ds.select_columns([column]).with_format("numpy")[:][column])


def count_labels(ds, column: str = "label") -> dict[str, int] | None:
    if not isinstance(ds, datasets.Dataset):
        return None
    feature = ds.features[column]
    counts = Counter(column_values(ds, column).tolist())
    if isinstance(feature, datasets.ClassLabel):
        return {feature.names[i]: int(counts.get(i, 0)) for i in range(feature.num_classes)}
    return {str(k): int(v) for k, v in sorted(counts.items())}


def permute_labels(ds: datasets.Dataset, seed: int) -> datasets.Dataset:
    """Permute the label column (same counts, new assignments): the shuffled-emotion control."""
    labels = column_values(ds, "label")
    permuted = np.random.default_rng(seed).permutation(labels)
    feature = ds.features["label"]
    return ds.remove_columns("label").add_column("label", permuted.tolist(), feature=feature)


def rows_before_cap(splits) -> dict[str, int]:
    """`<split>_rows_before_cap` of each split whose length is known, taken before `--max_train_samples` /
    `--max_eval_samples` cap it: with the rows used, a card tells a subsample from a cap that dropped nothing."""
    return {
        f"{name}_rows_before_cap": len(split) for name, split in splits.items() if hasattr(split, "__len__")
    }


def files_without_rows(data_files: dict) -> list[tuple[str, str, str]]:
    """(split, file, why) for each local data file that holds no rows: an empty file (0 bytes), a CSV with a
    header only, a parquet file of 0 rows. `datasets` reports those as a failed generation or "Instruction
    'train' corresponds to no data!", naming neither the file nor that it is empty."""
    import pyarrow.parquet as pq

    found = []
    for split, paths in (data_files or {}).items():
        for path in map(str, paths):
            if not os.path.isfile(path):
                continue
            if os.path.getsize(path) == 0:
                found.append((str(split), path, "an empty file, 0 bytes"))
            elif path.endswith(".parquet") and pq.read_metadata(path).num_rows == 0:
                found.append((str(split), path, "a parquet file of 0 rows"))
            elif path.endswith((".csv", ".tsv")) and _lines(path) <= 1:
                found.append((str(split), path, "a header and no row"))
            elif path.endswith((".json", ".jsonl")) and _lines(path) == 0:
                found.append((str(split), path, "only white space"))
    return found


def _lines(path: str) -> int:
    """Non-blank lines of a text file (2 at most are counted: enough to tell a header-only file)."""
    count = 0
    with open(path, "rb") as handle:
        for line in handle:
            count += bool(line.strip())
            if count > 1:
                break
    return count


# A load report's counts of rows left out -> the reason the run record names (`DatasetRecord.rows_dropped`).
DROP_COUNTS = {
    "bad_images": "unreadable_image",  # on_bad_image: skip
    "unlabeled_dropped": "no_label",  # drop_unlabeled: true
    "unmapped_dropped": "unmapped_label",  # drop_unmapped: true, or a label_map's null
    "unseen_class_dropped": "class_not_in_train",  # drop_unseen_classes: true
}


def rows_dropped(load_report: dict, split_names: dict[str, str]) -> dict[str, dict[str, int]]:
    """{role: {reason: rows}} of the rows a load left out, from its report (keyed by the source's split
    names; `split_names`: role -> name); only splits and reasons with rows, so a clean load gives {}."""
    dropped = {}
    for role, name in split_names.items():
        counts = load_report.get(name) or {}
        reasons = {why: int(counts[key]) for key, why in DROP_COUNTS.items() if counts.get(key)}
        if reasons:
            dropped[role] = reasons
    return dropped
