"""Data sources as data: load any image-classification data set through ``datasets.load_dataset`` and
bring it to one schema — ``image`` (PIL, RGB), ``label`` (ClassLabel), ``source`` (str).

Affective sources are mapped onto one taxonomy and mixed by weight; target data sets keep their own
class names and get train / validation / test splits.
"""

from __future__ import annotations

import dataclasses
import glob
import io
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from .demo import resolve_demo_path

logger = logging.getLogger(__name__)

IMAGE_COLUMN_CANDIDATES = ("image", "img", "pixel_values", "picture", "photo")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "emotion", "fine_label", "class", "category")
VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "dev")
PACKAGED_BUILDERS = ("imagefolder", "parquet", "csv", "json", "arrow", "webdataset")  # read local files


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
    weight: float | None = None
    streaming: bool = False
    source: str | None = None  # the name written to the `source` column; default derived from path
    validation_split: str | None = None  # the data set's own validation split, if its name is unusual
    load_kwargs: dict = field(default_factory=dict)  # anything else for load_dataset
    obtain: str | None = None  # how to get a gated or licensed source; shown when it is missing

    @classmethod
    def from_any(cls, spec: SourceSpec | Mapping | str) -> SourceSpec:
        if isinstance(spec, SourceSpec):
            return spec
        if isinstance(spec, str):
            return cls(path=spec)
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
            return [self.data_dir, *files] if self.data_dir else files
        if (
            self.path.startswith((".", "/", "~"))
            or os.sep in self.path.rstrip(os.sep)
            and self.path.count("/") != 1
        ):
            return [self.path]
        return []


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


# ---------------------------------------------------------------- loading one source


def _load(spec: SourceSpec, split: str | None = None):
    """``datasets.load_dataset`` with the spec's arguments (``demo:<name>`` resolves to the cache)."""
    kwargs: dict[str, Any] = {"path": spec.path}
    if spec.path.startswith("demo:"):
        kwargs.update(resolve_demo_path(spec.path.removeprefix("demo:")))
    for key in ("name", "data_dir", "data_files", "revision"):
        if getattr(spec, key) is not None:
            kwargs[key] = getattr(spec, key)
    try:
        return datasets.load_dataset(**kwargs, split=split, streaming=spec.streaming, **spec.load_kwargs)
    except Exception as err:
        raise type(err)(f"source {spec.display_name!r}: load_dataset({kwargs}) failed: {err}") from err


def load_with_train_split(spec: SourceSpec, kind: str):
    """Load a source; return it, its split names and the training split (`spec.split`, default `train`)."""
    loaded = _load(spec)
    splits = _split_names(loaded)
    train_split = spec.split or "train"
    if train_split not in splits:
        raise ValueError(
            f"{kind} {spec.display_name!r}: split {train_split!r} not found; splits are {splits}"
        )
    return loaded, splits, train_split


def pick_column(spec: SourceSpec, features: datasets.Features, which: str) -> str:
    given = spec.image_column if which == "image" else spec.label_column
    columns = list(features)
    if given is not None:
        if given not in features:
            raise ValueError(
                f"source {spec.display_name!r}: {which}_column {given!r} not found; columns are {columns}"
            )
        return given
    if which == "image":
        found = [c for c in columns if isinstance(features[c], datasets.Image)]
        found = found or [c for c in IMAGE_COLUMN_CANDIDATES if c in features]
    else:
        found = [c for c in LABEL_COLUMN_CANDIDATES if c in features]
        found = found or [c for c in columns if isinstance(features[c], datasets.ClassLabel)]
    if not found:
        raise ValueError(
            f"source {spec.display_name!r}: no {which} column found among {columns}; set `{which}_column`"
        )
    return found[0]


def label_vocabulary(ds, column: str, spec: SourceSpec) -> list[str] | None:
    """Source label vocabulary: ClassLabel names, or the distinct values of a string/int column."""
    feature = ds.features[column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    if isinstance(ds, datasets.IterableDataset):
        return None  # unknown until streamed: mapped lazily, errors at iteration
    return sorted(str(v) for v in ds.unique(column))


def _check_image(value: dict) -> str | None:
    """None if the encoded image decodes fully, else the reason (truncated, empty, not an image)."""
    import PIL.Image

    try:
        data = value.get("bytes")
        if data is None:
            with open(value["path"], "rb") as f:
                data = f.read()
        if not data:
            return "empty file (0 bytes)"
        with PIL.Image.open(io.BytesIO(data)) as im:
            if im.format == "JPEG":  # decode at 1/8 scale: still reads every byte, 10x cheaper
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError ... for broken files
        return f"{type(err).__name__}: {err}"
    return None


class _Prepare:
    """One pass per source: check images, map labels onto the target ClassLabel, add ``source``.

    A class (not a closure) so that ``datasets`` can fingerprint and cache it.
    """

    def __init__(
        self,
        lookup: dict[str, int | None] | None,
        int_names: list[str] | None,
        source: str,
        split: str,
        on_bad_image: str,
        check_images: bool = True,
    ):
        self.lookup, self.int_names, self.source, self.split = lookup, int_names, source, split
        self.on_bad_image, self.check_images = on_bad_image, check_images

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        keep, labels = [], []
        for value, label, row in zip(batch["image"], batch["label"], indices):
            ok = True
            if self.check_images:
                problem = _check_image(value) if value is not None else "missing image"
                if problem is not None:
                    if self.on_bad_image == "error":
                        where = value.get("path") if value else None
                        raise ValueError(
                            f"source {self.source!r}, split {self.split!r}, row {row}: unreadable image "
                            f"({problem}){f' at {where}' if where else ''}. Set `on_bad_image: skip` to drop it."
                        )
                    ok = False
            if self.lookup is not None:
                name = self.int_names[label] if self.int_names is not None else str(label)
                if name not in self.lookup:
                    raise ValueError(
                        f"source {self.source!r}, split {self.split!r}, row {row}: label {name!r} was not in "
                        f"the label mapping {sorted(self.lookup)}"
                    )
                label = self.lookup[name]
            labels.append(-1 if label is None else label)
            keep.append(ok)
        return {
            "label": labels,
            "source": [self.source] * len(keep),
            "_keep": keep,
            "_bad": [not k for k in keep],
        }


def prepare_split(
    ds,
    spec: SourceSpec,
    split: str,
    label_names: list[str] | None,
    lookup: Mapping | None,
    class_label: datasets.ClassLabel,
    on_bad_image: str,
    stats: dict,
):
    """Rename to image/label, check images, map labels, add source, cast to the final features."""
    image_col = pick_column(spec, ds.features, "image")
    label_col = pick_column(spec, ds.features, "label")
    ds = ds.select_columns([image_col, label_col])
    if image_col != "image":
        ds = ds.rename_column(image_col, "image")
    if label_col != "label":
        ds = ds.rename_column(label_col, "label")
    if not isinstance(ds.features["image"], datasets.Image):
        raise ValueError(
            f"source {spec.display_name!r}: image column {image_col!r} holds {ds.features['image']}, not images"
        )
    ds = ds.cast_column("image", datasets.Image(decode=False))
    int_names = label_names if isinstance(ds.features["label"], datasets.ClassLabel) else None
    fn = _Prepare(lookup, int_names, spec.display_name, split, on_bad_image)
    features = datasets.Features(
        {
            "image": datasets.Image(decode=False),
            "label": datasets.Value("int64"),
            "source": datasets.Value("string"),
            "_keep": datasets.Value("bool"),
            "_bad": datasets.Value("bool"),
        }
    )
    ds = ds.map(fn, batched=True, with_indices=True, features=features)
    if isinstance(ds, datasets.Dataset):
        bad = int(np.sum(_column(ds, "_bad")))
        dropped = int(np.sum(_column(ds, "label") == -1))
        stats[split] = {"rows_loaded": len(ds), "bad_images": bad, "unmapped_dropped": dropped}
    else:
        stats[split] = {  # rows are checked as they stream past; skips are not counted
            "rows_loaded": None,
            "bad_images": None,
            "unmapped_dropped": None,
            "note": "streaming: unreadable images and unmapped labels are dropped as they arrive, uncounted",
        }
    ds = ds.filter(_keep_row, batched=True, input_columns=["_keep", "label"]).remove_columns(
        ["_keep", "_bad"]
    )
    ds = ds.cast_column("label", class_label)
    return ds.cast_column("image", datasets.Image(mode="RGB"))


def _keep_row(keep: list[bool], label: list[int]) -> list[bool]:
    return [k and y >= 0 for k, y in zip(keep, label)]


def _split_names(loaded) -> list[str]:
    return list(loaded.keys())


def find_validation(spec: SourceSpec, splits: list[str]) -> str | None:
    if spec.validation_split is not None:
        if spec.validation_split not in splits:
            raise ValueError(
                f"source {spec.display_name!r}: validation_split {spec.validation_split!r} not in splits {splits}"
            )
        return spec.validation_split
    return next((s for s in VALIDATION_SPLIT_NAMES if s in splits), None)


def carve_validation(ds: datasets.Dataset, size: float, seed: int, source: str):
    """Stratified, seeded train/validation split; unstratified if a class is too rare to stratify."""
    try:
        parts = ds.train_test_split(test_size=size, stratify_by_column="label", seed=seed)
    except ValueError as err:
        logger.warning(
            "source %r: stratified validation split impossible (%s); using a random one", source, err
        )
        parts = ds.train_test_split(test_size=size, seed=seed)
    return parts["train"], parts["test"]


def stream_validation(ds: datasets.IterableDataset, size: float, seed: int, spec: SourceSpec):
    """Streaming source without its own validation split: the first n examples (n = size if >= 1,
    else size x the split's known length, else 500) become a small in-memory validation set."""
    try:
        known = ds.info.splits[spec.split or "train"].num_examples
    except (AttributeError, KeyError, TypeError):
        known = None
    n = int(size) if size >= 1 else (max(1, round(size * known)) if known else 500)
    rows = list(ds.take(n))
    validation = datasets.Dataset.from_list(rows, features=ds.features)
    return ds.skip(n), validation


def _column(ds: datasets.Dataset, column: str) -> np.ndarray:
    """One column as numpy, without decoding the others (respects select/split index mappings)."""
    if len(ds) == 0:
        return np.array([])
    return np.asarray(ds.select_columns([column]).with_format("numpy")[:][column])


def count_labels(ds, column: str = "label") -> dict[str, int] | None:
    if not isinstance(ds, datasets.Dataset):
        return None
    feature = ds.features[column]
    counts = Counter(_column(ds, column).tolist())
    if isinstance(feature, datasets.ClassLabel):
        return {feature.names[i]: int(counts.get(i, 0)) for i in range(feature.num_classes)}
    return {str(k): int(v) for k, v in sorted(counts.items())}


def permute_labels(ds: datasets.Dataset, seed: int) -> datasets.Dataset:
    """Permute the label column (same counts, new assignments): the shuffled-emotion control."""
    labels = _column(ds, "label")
    permuted = np.random.default_rng(seed).permutation(labels)
    feature = ds.features["label"]
    return ds.remove_columns("label").add_column("label", permuted.tolist(), feature=feature)


def check_policy(on_bad_image: str) -> None:
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
