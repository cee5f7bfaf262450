"""FER+ (Barsoum et al. 2016) as microsoft/FERPlus released it: `fer2013new.csv`'s ten annotators' votes per
FER-2013 face joined to `fer2013.csv`'s pixels by row, and turned into labels by the release's own rules
(`src/ferplus.py`, `_process_data` / `_process_target`), ported line by line so its quirks stay.

`label_mode` is the release's training mode: `majority` (one-hot), `probability` (a one-hot drawn from the
vote distribution each time a face is seen: the paper's PLD) or `crossentropy` (the distribution itself as a
soft target). As in the release, validation and test are always read in `majority` mode; faces whose result
is unknown or not-a-face, and faces FER+ gave no image name, are dropped and counted."""

from __future__ import annotations

import csv
import sys
from collections import Counter

import datasets
import numpy as np

# fer2013new.csv's vote columns, in its order; the first eight are the classes (train.py's emotion_table).
FERPLUS_EMOTIONS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
VOTE_COLUMNS = (*FERPLUS_EMOTIONS, "unknown", "NF")
HEADER = ("Usage", "Image name", *VOTE_COLUMNS)
LABEL_MODES = ("majority", "probability", "crossentropy")
SOFT_MODES = ("probability", "crossentropy")  # the modes whose training rows carry a vote distribution
LABEL_COLUMN = "ferplus"  # the joined label column (ClassLabel of FERPLUS_EMOTIONS)
DISTRIBUTION = "label_distribution"  # a training row's target distribution, in the run's class order
UNKNOWN, NOT_FACE = 8, 9  # indices of the release's `unknown` and `NF` outcomes
DROP_REASONS = ("no_image", "unknown", "not_face")


def process_votes(votes, mode: str) -> list[float]:
    """`_process_data` of the release: the ten vote counts -> a normalised 10-vector whose argmax is the
    outcome (0-7 an emotion, 8 unknown, 9 not a face). A single vote is noise (set to 0); `majority` keeps
    the top emotion if it has more than half the votes; the soft modes take the top emotions (ties
    together) until 75 % of the votes or 3 emotions, and give up (unknown) below half of them or above 3."""
    raw = [float(v) for v in votes]
    size = len(raw)
    unknown = [0.0] * size
    unknown[-2] = 1.0
    for i in range(size):
        if raw[i] < 1.0 + sys.float_info.epsilon:
            raw[i] = 0.0
    total = sum(raw)
    emotion = [0.0] * size
    if mode == "majority":
        top = max(raw)
        if top > 0.5 * total:
            emotion[int(np.argmax(raw))] = top
        else:
            emotion = unknown
    elif mode in SOFT_MODES:
        part, count, valid = 0.0, 0, True
        while part < 0.75 * total and count < 3 and valid:
            top = max(raw)
            for i in range(size):
                if raw[i] == top:
                    emotion[i] = top
                    raw[i] = 0
                    part += emotion[i]
                    count += 1
                    if i >= UNKNOWN:  # unknown or not-a-face shares the top count
                        valid = False
                        if sum(emotion) > top:  # other emotions came first: they stand without it
                            emotion[i] = 0
                            count -= 1
                        break
        if sum(emotion) <= 0.5 * total or count > 3:
            emotion = unknown
    else:
        raise ValueError(f"label_mode must be one of {list(LABEL_MODES)}, got {mode!r}")
    whole = sum(emotion)
    return [float(e) / whole for e in emotion]


def outcome(votes, mode: str) -> tuple[int, list[float] | None]:
    """(the outcome index 0-9, the distribution over the eight emotions, or None when dropped): the
    release's `load_folders` keeps a face whose argmax is an emotion and renormalises over the eight."""
    emotion = process_votes(votes, mode)
    index = int(np.argmax(emotion))
    if index >= UNKNOWN:
        return index, None
    kept = emotion[:UNKNOWN]
    return index, [e / sum(kept) for e in kept]


def read_votes(path: str) -> list[list[str]]:
    """fer2013new.csv's rows (header checked), each `[Usage, Image name, ten counts]` as text."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(c.strip() for c in rows[0]) != HEADER:
        raise ValueError(
            f"FER+ votes {path}: the header must be {','.join(HEADER)} (fer2013new.csv as released); "
            f"found {rows[0] if rows else 'an empty file'}"
        )
    body = rows[1:]
    for row, values in enumerate(body):
        if len(values) != len(HEADER):
            raise ValueError(
                f"FER+ votes {path}, row {row} (line {row + 2}): {len(values)} fields, expected {len(HEADER)}"
            )
        for name, value in zip(VOTE_COLUMNS, values[2:]):
            try:
                ok = float(value) >= 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(
                    f"FER+ votes {path}, row {row} (line {row + 2}), column {name!r}: {value!r} is not a "
                    "vote count (a number >= 0)"
                )
    return body


def join_votes(loaded, spec) -> tuple[datasets.DatasetDict, dict]:
    """The FER-2013 rows with FER+ labels joined by row: every row's Usage checked against the votes',
    labels by `spec.label_mode` (training rows; validation/test by majority, as the release reads them),
    dropped rows removed. Returns the rows as one `train` split (for `split_by_column`) and the report of
    rows read and dropped, per split and reason, and the rows each mode would keep."""
    name, mode = spec.display_name, spec.label_mode or "majority"
    usage_column = spec.split_column or "Usage"
    parts = list(loaded.values())
    whole = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    if usage_column not in whole.column_names:
        raise ValueError(
            f"source {name!r}: column {usage_column!r} not found; columns are {whole.column_names}"
        )
    votes = read_votes(spec.votes)
    if len(votes) != len(whole):
        raise ValueError(
            f"source {name!r}: {spec.votes} has {len(votes)} rows of votes but the FER-2013 file has "
            f"{len(whole)} rows; FER+ is joined row by row, so both must be the files as released"
        )
    split_of = {str(k): str(v) for k, v in (spec.split_map or {}).items()}
    usages = [str(u).strip() for u in whole[usage_column]]
    named = Counter(values[1].strip() for values in votes if values[1].strip())
    train_split = spec.split or "train"
    labels, distributions, keep = [], [], []
    report: dict = {"votes": spec.votes, "label_mode": mode, "evaluation_mode": "majority", "splits": {}}
    for row, (usage, values) in enumerate(zip(usages, votes)):
        if values[0].strip() != usage:
            raise ValueError(
                f"source {name!r}, row {row}: {usage_column} is {usage!r} in the FER-2013 file but "
                f"{values[0].strip()!r} in {spec.votes} (line {row + 2}); the files must be in the same order"
            )
        split = split_of.get(usage, usage)
        counts = report["splits"].setdefault(
            split,
            {
                "rows_read": 0,
                "kept": 0,
                **dict.fromkeys(DROP_REASONS, 0),
                "kept_by_mode": dict.fromkeys(LABEL_MODES, 0),
                "repeated_name": 0,
            },
        )
        counts["rows_read"] += 1
        image_name = values[1].strip()
        row_mode = mode if split == train_split else "majority"
        index, distribution = outcome(values[2:], row_mode) if image_name else (None, None)
        if not image_name:
            counts["no_image"] += 1
        else:
            # fer2013new.csv names a few images twice (the release's image folders keep one file per
            # name); each row is kept here with its own pixels and votes, and counted
            counts["repeated_name"] += named[image_name] > 1
            for other in LABEL_MODES:
                counts["kept_by_mode"][other] += outcome(values[2:], other)[1] is not None
            if distribution is None:
                counts["unknown" if index == UNKNOWN else "not_face"] += 1
            else:
                counts["kept"] += 1
        labels.append(index if distribution is not None else -1)
        distributions.append(distribution if row_mode in SOFT_MODES else None)
        keep.append(distribution is not None)
    joined = whole.add_column(LABEL_COLUMN, labels)
    if mode in SOFT_MODES:  # validation/test rows lose the column in `without_soft_targets`
        joined = joined.add_column(DISTRIBUTION, [d or [0.0] * len(FERPLUS_EMOTIONS) for d in distributions])
        joined = joined.cast_column(DISTRIBUTION, datasets.Sequence(datasets.Value("float32")))
    joined = joined.select(np.flatnonzero(keep))
    joined = joined.cast_column(LABEL_COLUMN, datasets.ClassLabel(names=list(FERPLUS_EMOTIONS)))
    return datasets.DatasetDict({"train": joined}), report


def without_soft_targets(loaded: datasets.DatasetDict) -> datasets.DatasetDict:
    """Every split but `train` without the distribution column: evaluation is by majority labels."""
    return datasets.DatasetDict(
        {
            split: ds.remove_columns(DISTRIBUTION)
            if split != "train" and DISTRIBUTION in ds.column_names
            else ds
            for split, ds in loaded.items()
        }
    )


def check_label_mode(spec) -> None:
    """`votes` and `label_mode` of a source spec, refused with its name before any data is read."""
    if spec.label_mode is not None and spec.label_mode not in LABEL_MODES:
        raise ValueError(
            f"source {spec.display_name!r}: label_mode must be one of {list(LABEL_MODES)}, got {spec.label_mode!r}"
        )
    if spec.votes is not None and spec.label_column not in (None, LABEL_COLUMN):
        raise ValueError(
            f"source {spec.display_name!r}: with `votes` the labels are FER+'s (label_column {LABEL_COLUMN!r}), "
            f"not {spec.label_column!r}; use `preset: ferplus`"
        )
    if spec.label_mode is not None and spec.votes is None:
        raise ValueError(
            f"source {spec.display_name!r}: label_mode needs `votes` (the path of FER+'s fer2013new.csv)"
        )


def with_one_hot(ds: datasets.Dataset, num_classes: int) -> datasets.Dataset:
    """A hard-label split with its labels as one-hot distributions, to be mixed with FER+ soft targets."""
    if DISTRIBUTION in ds.column_names:
        return ds
    one_hot = np.eye(num_classes, dtype=np.float32)[np.asarray(ds["label"], dtype=np.int64)]
    column = datasets.Sequence(datasets.Value("float32"))
    return ds.add_column(DISTRIBUTION, one_hot.tolist(), feature=column)


def soft_class_counts(ds, names: list[str]) -> dict[str, float] | None:
    """Σ of the training rows' target distributions per class (None without soft targets): the expected
    number of times each class is the target, which class weighting reads for soft targets."""
    if not isinstance(ds, datasets.Dataset) or DISTRIBUTION not in ds.column_names or len(ds) == 0:
        return None
    sums = np.asarray(ds.select_columns([DISTRIBUTION])[DISTRIBUTION], dtype=np.float64).sum(0)
    return {name: round(float(n), 4) for name, n in zip(names, sums)}


def votes_dropped(report: dict) -> dict[str, dict[str, int]]:
    """{split: {reason: rows}} of the faces the votes dropped, as `DatasetRecord.rows_dropped` keeps them
    (`ferplus_no_image`, `ferplus_unknown`, `ferplus_not_face`; only those with rows), for the card."""
    dropped = {}
    for split, counts in report["splits"].items():
        reasons = {f"ferplus_{why}": counts[why] for why in DROP_REASONS if counts[why]}
        if reasons:
            dropped[split] = reasons
    return dropped
