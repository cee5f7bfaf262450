"""Source specs as data: one YAML entry of a data-source list (`SourceSpec`), the presets that name a source
as its authors released it (`SOURCE_PRESETS`), and the checks that its local files are there."""

from __future__ import annotations

import dataclasses
import glob
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ferplus import SOFT_MODES, check_label_mode
from .schema import PACKAGED_BUILDERS

# Sources as their authors released them, one key away: `{preset: fer2013, data_files: /path/to/fer2013.csv}`.
SOURCE_PRESETS: dict[str, dict[str, Any]] = {
    # FER-2013 (Goodfellow et al. 2013) as the ICML 2013 challenge released it: fer2013.csv with `emotion`
    # (0-6), `pixels` (48x48 grayscale, space-separated) and `Usage`, whose three values are the challenge's
    # own splits: Training (28,709 faces) -> train, PublicTest (3,589, the public leaderboard) -> validation,
    # PrivateTest (3,589, the final ranking) -> test.
    "fer2013": {
        "path": "csv",
        "source": "fer2013",
        "image_column": "pixels",
        "pixels_size": 48,
        "label_column": "emotion",
        "label_map": {
            "0": "angry",
            "1": "disgust",
            "2": "fear",
            "3": "happy",
            "4": "sad",
            "5": "surprise",
            "6": "neutral",
        },  # fmt: skip
        "split_column": "Usage",
        "split_map": {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"},
        "load_kwargs": {"skipinitialspace": True},  # some copies write `emotion, Usage, pixels`
        "obtain": "download fer2013.csv from https://www.kaggle.com/c/challenges-in-representation-learning-"
        "facial-expression-recognition-challenge/data and give its path as data_files",
    },
    # FER+ (Barsoum et al. 2016, github.com/microsoft/FERPlus): the same faces, relabelled by ten annotators;
    # fer2013new.csv (`votes`) is joined to fer2013.csv by row (data/ferplus.py). Eight classes: the FER+
    # emotions, contempt included (taxonomy `ferplus8`); dropped: no image name, unknown, not a face.
    "ferplus": {
        "path": "csv",
        "source": "ferplus",
        "image_column": "pixels",
        "pixels_size": 48,
        "label_column": "ferplus",
        "label_mode": "majority",
        "split_column": "Usage",
        "split_map": {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"},
        "load_kwargs": {"skipinitialspace": True},
        "obtain": "download fer2013.csv (see the fer2013 preset) as data_files, and fer2013new.csv from "
        "https://github.com/microsoft/FERPlus as votes",
    },
}


@dataclass
class SourceSpec:
    """One YAML entry of a data-source list; every field except ``path`` is optional."""

    path: str
    name: str | None = None
    data_dir: str | None = None
    data_files: Any = None
    split: str | None = None
    revision: str | None = None
    image_column: str | None = None
    label_column: str | None = None
    label_map: dict | None = None
    drop_unmapped: bool = False
    drop_unlabeled: bool = (
        False  # rows whose label is missing (None, NaN, -1): dropped and counted, else an error
    )
    # target: validation/test rows of classes no training row has, dropped and counted, else an error
    drop_unseen_classes: bool = False
    weight: float | None = None
    streaming: bool = False
    source: str | None = None  # the name written to the `source` column; default derived from path
    validation_split: str | None = None  # the data set's own validation split, if its name is unusual
    load_kwargs: dict = field(default_factory=dict)  # anything else for load_dataset
    obtain: str | None = None  # how to get a gated or licensed source; shown when it is missing
    # The image column holds pixel values as text ("70 80 82 ...", row-major, 0-255) of this size: 48 or
    # [height, width]; one value per pixel is grayscale, three are RGB (FER-2013's `pixels`).
    pixels_size: int | list[int] | None = None
    split_column: str | None = None  # a column naming each row's split (FER-2013: `Usage`)
    split_map: dict | None = None  # its values -> train / validation / test (default: the values themselves)
    votes: str | None = None  # FER+'s fer2013new.csv, joined to the rows by order (data/ferplus.py)
    label_mode: str | None = None  # FER+: majority | probability | crossentropy (with `votes`)

    def __post_init__(self):
        check_label_mode(self)

    @classmethod
    def from_any(cls, spec: SourceSpec | Mapping | str) -> SourceSpec:
        if isinstance(spec, SourceSpec):
            return spec
        if isinstance(spec, str):
            return cls(path=spec)
        if isinstance(spec, Mapping) and "preset" in spec:
            preset = spec["preset"]
            if preset not in SOURCE_PRESETS:
                raise ValueError(f"unknown source preset {preset!r}; available: {sorted(SOURCE_PRESETS)}")
            spec = {**SOURCE_PRESETS[preset], **{k: v for k, v in spec.items() if k != "preset"}}
        if not isinstance(spec, Mapping) or "path" not in spec:
            raise ValueError(f"a data source needs at least a `path`; got {spec!r}")
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise ValueError(
                f"data source {spec.get('path')!r}: unknown key(s) {unknown}; allowed: {sorted(allowed)}"
            )
        return cls(**dict(spec))

    @property
    def display_name(self) -> str:
        if self.source:
            return self.source
        base = self.path.removeprefix("demo:")
        if self.path in PACKAGED_BUILDERS and self.data_dir:
            base = Path(self.data_dir).name
        elif Path(base).exists():
            base = Path(base).resolve().name
        return base + (f"/{self.name}" if self.name else "")

    def local_paths(self) -> list[str]:
        """The local files or folders this source reads (none for a Hub id, which cannot be checked offline)."""
        if self.path in PACKAGED_BUILDERS:
            files = [self.data_files] if isinstance(self.data_files, str) else []
            files += [self.votes] if self.votes else []
            return [self.data_dir, *files] if self.data_dir else files
        if (
            self.path.startswith((".", "/", "~"))
            or os.sep in self.path.rstrip(os.sep)
            and self.path.count("/") != 1
            or looks_like_local_folder(self.path)
        ):
            return [self.path]
        return []


def looks_like_local_folder(path: str) -> bool:
    """`data/cifar10` where `data/` is a folder here: a relative path (perhaps mistyped), not the Hub id
    `data/cifar10`, which `load_dataset` would try to fetch and report as a Hub failure."""
    head = path.split("/", 1)[0]
    return path.count("/") == 1 and not path.startswith("demo:") and bool(head) and os.path.isdir(head)


def is_synthetic(spec: SourceSpec | Mapping | str) -> bool:
    """The one rule for "synthetic data": the source is the embedded demo generator (`demo:<name>`)."""
    return SourceSpec.from_any(spec).path.startswith("demo:")


def missing_sources(sources: list) -> list[str]:
    """Local sources whose files are absent, each with how to obtain it; checked before any training so a
    run does not die after hours on its last source."""
    problems = []
    for spec in map(SourceSpec.from_any, sources):
        absent = [p for p in spec.local_paths() if not glob.glob(os.path.expanduser(p))]
        if absent:
            how = spec.obtain or "see the source's homepage; arrange it as the spec says"
            problems.append(
                f"source {spec.display_name!r}: {', '.join(absent)} not found. To obtain it: {how}"
            )
    return problems


def check_sources_available(sources: list) -> None:
    problems = missing_sources(sources)
    if problems:
        raise FileNotFoundError(
            "affective data is missing (nothing was trained):\n  - " + "\n  - ".join(problems)
        )


def draws_targets(sources) -> bool:
    """Whether a run's training targets are drawn per sighting (a FER+ source in `probability` mode); a
    run cannot mix that with a `crossentropy` source (the collator does one or the other)."""
    modes = {SourceSpec.from_any(s).label_mode for s in sources or ()} & set(SOFT_MODES)
    if len(modes) > 1:
        raise ValueError(
            "FER+ sources in label_mode probability and crossentropy in one run: choose one of the two"
        )
    return modes == {"probability"}
