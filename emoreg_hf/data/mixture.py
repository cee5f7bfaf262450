"""Affective mixtures: several emotion data sets, each source's labels mapped onto one taxonomy, mixed
by weight (`interleave_datasets`) or concatenated, with a per-source, per-class report."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets

from ..taxonomy import LabelSpace, get_label_space
from .ferplus import DISTRIBUTION, soft_class_counts, votes_dropped, with_one_hot
from .prepare import check_policy, label_vocabulary, pick_column, prepare_split
from .schema import SHUFFLE_BUFFER
from .sources import find_validation, load_with_train_split
from .specs import SourceSpec
from .splits import (
    carve_validation,
    count_labels,
    permute_labels,
    read_into_memory,
    rows_dropped,
    stream_validation_rows,
)
from .streaming import as_stream_rows

logger = logging.getLogger(__name__)


def load_affective_mixture(
    sources: list[dict | SourceSpec],
    taxonomy: str | Mapping | LabelSpace,
    *,
    seed: int = 42,
    on_bad_image: str = "error",
    shuffle_labels: bool = False,
    validation_split_size: float = 0.1,
    report_path: str | Path | None = None,
    stopping_strategy: str = "all_exhausted",
) -> tuple[datasets.DatasetDict, dict]:
    """Load affective sources, map their labels onto ``taxonomy``, and mix them.

    Returns ``DatasetDict(train=..., validation=...[, test=...])`` with columns image / label / source (``test``
    when a map-style source has a test split; its labels are never shuffled), and a
    JSON-serialisable report (also written to ``report_path``). With weights, ``train`` is
    ``interleave_datasets`` with probabilities ∝ weight (``stopping_strategy="all_exhausted"``: every
    example is seen, smaller sources repeat); without, the sources are concatenated. ``validation`` is
    carved per source (stratified, seeded) unless a source has its own validation split; it is never
    weighted. If any source streams, ``train`` is an ``IterableDataset`` of encoded rows for
    ``streaming.StreamedTrainSplit`` (shuffled through a buffer), and a streamed source's evaluation splits
    are read into memory (without a validation split: its first rows, see ``stream_validation_rows``).
    """
    check_policy(on_bad_image)
    space = get_label_space(taxonomy)
    specs = [SourceSpec.from_any(s) for s in sources]
    if not specs:
        raise ValueError("load_affective_mixture needs at least one source")
    names = [s.display_name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"several sources are named {duplicates}; give each a distinct `source:`")
    weighted = any(s.weight is not None for s in specs)
    if weighted and any(s.weight is None or s.weight <= 0 for s in specs):
        raise ValueError(
            f"when one source has a weight, all need a positive one; got {[s.weight for s in specs]}"
        )
    class_label = space.class_label()
    report: dict[str, Any] = {
        "taxonomy": space.name,
        "labels": list(space.names),
        "seed": seed,
        "shuffle_labels": shuffle_labels,
        "on_bad_image": on_bad_image,
        "sources": {},
    }
    trains, validations, tests = [], [], []
    for i, spec in enumerate(specs):
        src = spec.display_name
        if shuffle_labels and spec.streaming:
            raise ValueError(
                f"source {src!r}: shuffle_labels needs a map-style source; set `streaming: false`"
            )
        loaded, splits, train_split = load_with_train_split(spec, "source")
        val_split = find_validation(spec, splits)
        label_col = pick_column(spec, loaded[train_split].features, "label")
        vocab = label_vocabulary(loaded[train_split], label_col, spec)
        stats: dict[str, Any] = {"path": spec.path, "weight": spec.weight, "streaming": spec.streaming}
        if hasattr(loaded, "split_counts"):  # rows per value of the source's split column (FER-2013's Usage)
            stats["split_column"] = loaded.split_counts
        if hasattr(loaded, "votes_report"):  # FER+: rows read and dropped per split and reason, per mode
            stats["votes"] = loaded.votes_report
        if vocab is not None:
            mapping = space.map_labels(
                vocab, source=src, label_map=spec.label_map, drop_unmapped=spec.drop_unmapped
            )
            stats["mapping"] = mapping
            lookup = {k: (space.names.index(v) if v is not None else None) for k, v in mapping.items()}
        else:  # streaming labels without ClassLabel: each new spelling is mapped when first seen
            lookup = _LazyLookup(space, spec)
            stats["mapping"] = "lazy (streaming source without a ClassLabel column)"
        test_split = "test" if "test" in splits and "test" not in (train_split, val_split) else None
        raw = {split: loaded[split] for split in (train_split, val_split, test_split) if split}
        first_rows = None  # a streamed source without a validation split: its first rows, in memory
        if spec.streaming:  # evaluation splits are read into memory and prepared like map-style ones
            image_col = pick_column(spec, loaded[train_split].features, "image")
            for split in (val_split, test_split):
                if split:
                    raw[split] = read_into_memory(raw[split], image_col)
            if not val_split:
                n = stream_validation_rows(loaded[train_split], validation_split_size, spec)
                first_rows = f"{train_split}[:{n}]"
                raw[first_rows] = read_into_memory(loaded[train_split], image_col, n)
                raw[train_split] = loaded[train_split].skip(n)
        parts = {}
        for split in raw:
            parts[split] = prepare_split(
                raw[split],
                spec,
                split,
                vocab,
                lookup,
                class_label,
                on_bad_image,
                stats.setdefault("splits", {}),
            )
        train = parts[train_split]
        if shuffle_labels and DISTRIBUTION in train.column_names:
            raise ValueError(
                f"source {src!r}: shuffle_labels permutes hard labels; use `label_mode: majority` for this control"
            )
        if shuffle_labels:
            train = permute_labels(train, seed + i)
        if val_split:
            validation = parts[val_split]
            if shuffle_labels:
                validation = permute_labels(validation, seed + 1000 + i)
        elif first_rows:
            validation = parts[first_rows]
        else:
            train, validation = carve_validation(train, validation_split_size, seed, src)
            if DISTRIBUTION in validation.column_names:  # evaluation is by (majority) labels
                validation = validation.remove_columns(DISTRIBUTION)
        roles = {"train": train_split, "validation": val_split, "test": test_split}
        stats["rows_dropped"] = rows_dropped(stats["splits"], {r: s for r, s in roles.items() if s})
        for role, reasons in votes_dropped(stats.get("votes") or {"splits": {}}).items():  # FER+'s drops
            stats["rows_dropped"][role] = {**reasons, **stats["rows_dropped"].get(role, {})}
        stats["validation_from"] = val_split or (
            "first examples of the stream" if spec.streaming else "carved"
        )
        stats["train"] = len(train) if isinstance(train, datasets.Dataset) else None
        stats["validation"] = len(validation)
        stats["class_counts"] = {"train": count_labels(train), "validation": count_labels(validation)}
        if DISTRIBUTION in (getattr(train, "column_names", None) or ()):
            stats["soft_class_counts"] = {"train": soft_class_counts(train, list(space.names))}
        if test_split:  # true labels, also under shuffle_labels: measures how much real emotion was learned
            tests.append(parts[test_split])
            stats["test"] = len(parts[test_split])
            stats["class_counts"]["test"] = count_labels(parts[test_split])
        report["sources"][src] = stats
        logger.info(
            "source %r: %s train / %d validation rows; train classes %s; per split %s",
            src,
            stats["train"] if stats["train"] is not None else "streamed",
            stats["validation"],
            stats["class_counts"]["train"],
            stats["splits"],
        )
        trains.append(train)
        validations.append(validation)

    streaming = any(not isinstance(t, datasets.Dataset) for t in trains)
    if any(DISTRIBUTION in (t.column_names or ()) for t in trains):  # FER+ soft targets: one-hot for the rest
        if streaming:
            raise ValueError("FER+ soft targets (label_mode probability/crossentropy) need map-style sources")
        trains = [with_one_hot(t, space.num_labels) for t in trains]
    if streaming:  # map-style sources join the stream in its schema (their rows were checked on loading)
        trains = [as_stream_rows(t) if isinstance(t, datasets.Dataset) else t for t in trains]
    if weighted:
        total = sum(s.weight for s in specs)
        probabilities = [s.weight / total for s in specs]
        train = datasets.interleave_datasets(
            trains, probabilities=probabilities, seed=seed, stopping_strategy=stopping_strategy
        )
        mixing = {
            "strategy": f"interleave ({stopping_strategy})",
            "probabilities": dict(zip(names, probabilities)),
        }
    else:
        train = datasets.concatenate_datasets(trains) if len(trains) > 1 else trains[0]
        mixing = {"strategy": "concatenate", "probabilities": None}
    if streaming:  # map-style training is reshuffled every epoch; a stream through a buffer, every pass
        train = train.shuffle(seed=seed, buffer_size=SHUFFLE_BUFFER)
        mixing["shuffle_buffer"] = SHUFFLE_BUFFER
    validation = datasets.concatenate_datasets(validations)
    mixing["train_rows"] = len(train) if not streaming else None
    mixing["train_per_source"] = count_labels(train, "source") if not streaming else None
    mixing["train_class_counts"] = count_labels(train) if not streaming else None
    mixing["validation_rows"] = len(validation)
    splits = {"train": train, "validation": validation}
    if tests:
        splits["test"] = datasets.concatenate_datasets(tests)
        mixing["test_rows"] = len(splits["test"])
    report["mixture"] = mixing
    logger.info("affective mixture: %s", json.dumps(report["mixture"]))
    if report_path is not None:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        Path(report_path).write_text(json.dumps(report, indent=2))
    return datasets.DatasetDict(splits), report


class _LazyLookup(dict):
    def __init__(self, space: LabelSpace, spec: SourceSpec):
        super().__init__()
        self.space, self.spec = space, spec

    def __contains__(self, key) -> bool:
        if not dict.__contains__(self, key):
            target = self.space.map_labels(
                [key],
                source=self.spec.display_name,
                label_map=self.spec.label_map,
                drop_unmapped=self.spec.drop_unmapped,
            )[str(key)]
            self[key] = self.space.names.index(target) if target is not None else None
        return True

    def __reduce__(self):
        return (_LazyLookup, (self.space, self.spec))
