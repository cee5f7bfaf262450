"""Data sources as data: load any image-classification data set through ``datasets.load_dataset`` and
bring it to one schema — ``image`` (PIL, RGB), ``label`` (ClassLabel), ``source`` (str).

Affective sources are mapped onto one taxonomy and mixed by weight; target data sets keep their own
class names and get train / validation / test splits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import json
import logging
import math
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .demo import resolve_demo_path
from .images import PixelStrings, check_image, pixels_size, to_8bit_rgb
from .splits import column_values, files_without_rows
from .streaming import STREAM_FEATURES, UNLABELED, UNMAPPED

logger = logging.getLogger(__name__)

IMAGE_COLUMN_CANDIDATES = ("image", "img", "pixel_values", "picture", "photo")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "emotion", "fine_label", "class", "category")
VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "dev")
PACKAGED_BUILDERS = ("imagefolder", "parquet", "csv", "json", "arrow", "webdataset")  # read local files

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


# ---------------------------------------------------------------- loading one source


def _load_kwargs(spec: SourceSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"path": spec.path}
    if spec.path.startswith("demo:"):
        kwargs.update(resolve_demo_path(spec.path.removeprefix("demo:")))
    for key in ("name", "data_dir", "data_files", "revision"):
        if getattr(spec, key) is not None:
            kwargs[key] = getattr(spec, key)
    return kwargs


class HubDataUnavailable(ValueError):
    """A Hub data set that can be neither downloaded (offline) nor read from the local cache."""


def is_hub_dataset(spec: SourceSpec) -> bool:
    """The source is a Hub data set id (`uoft-cs/cifar10`), not a builder, a local path or the demo."""
    path = spec.path
    return not (
        path in PACKAGED_BUILDERS
        or path.startswith(("demo:", ".", "/", "~"))
        or os.path.exists(path)
        or path.count("/") > 1
    )


@functools.cache
def hub_reachable() -> bool:
    """Whether the Hub's host answers at all (one connection, 5 s at most). Without this, an unplugged machine
    waits through the Hub client's five retries, with a warning each, before the error."""
    from urllib.parse import urlparse

    from huggingface_hub import constants

    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # through a proxy only the client can tell
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection(
            (url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout=5
        ).close()
    except OSError:
        return False
    return True


def _offline() -> bool:
    return bool(datasets.config.HF_HUB_OFFLINE)


@contextlib.contextmanager
def hub_or_cache(spec: SourceSpec):
    """Load a Hub data set from the Hub, or, when the Hub is out of reach (offline mode, no network), from the
    local cache at once; if it is not cached either, one `HubDataUnavailable` line says what to do."""
    if not is_hub_dataset(spec) or (not _offline() and hub_reachable()):
        yield
        return
    from huggingface_hub import constants

    forced = not _offline()
    if forced:
        logger.warning(
            "the Hub (%s) cannot be reached: reading %r from the local cache", constants.ENDPOINT, spec.path
        )
    saved = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    datasets.config.HF_HUB_OFFLINE = constants.HF_HUB_OFFLINE = True
    try:
        yield
    except HubDataUnavailable:
        raise
    except Exception as error:
        why = "the Hub cannot be reached from this machine" if forced else "HF_HUB_OFFLINE is set"
        raise HubDataUnavailable(
            f"source {spec.display_name!r}: {spec.path} is a Hub data set, {why}, and it is not in the local cache "
            f"({type(error).__name__}). Download it once where the Hub is reachable (it is cached then), or point "
            f"`path` at a local copy, e.g. --dataset '{{path: /path/to/{spec.path.split('/')[-1]}}}'"
        ) from None
    finally:
        datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE = saved


def declared_class_names(spec: SourceSpec, column: str) -> dict[str, list[str]]:
    """The ClassLabel names each split's local parquet file declares for `column`. `datasets` reads every
    split with the first file's names, so a split whose file lists them in another order (or other ones)
    would be read with the wrong names; this is how that is caught. Empty for other sources."""
    import pyarrow.parquet as pq

    try:
        with hub_or_cache(spec):
            builder = datasets.load_dataset_builder(**_load_kwargs(spec), **spec.load_kwargs)
        files = builder.config.data_files or {}
    except Exception:  # not resolvable without loading (a Hub script, no network): nothing to compare
        return {}
    declared = {}
    for split, paths in files.items():
        local = [str(p) for p in paths if str(p).endswith(".parquet") and os.path.isfile(str(p))]
        if not local:
            continue
        meta = (pq.read_schema(local[0]).metadata or {}).get(b"huggingface")
        feature = (json.loads(meta).get("info", {}).get("features", {}).get(column) or {}) if meta else {}
        if feature.get("_type") == "ClassLabel" and feature.get("names"):
            declared[str(split)] = list(feature["names"])
    return declared


def _load(spec: SourceSpec):
    """``datasets.load_dataset`` with the spec's arguments (``demo:<name>`` resolves to the cache), its rows
    regrouped into splits by `split_column` and its pixel strings decoded (`pixels_size`), when asked."""
    kwargs = _load_kwargs(spec)
    try:
        with hub_or_cache(spec):
            loaded = datasets.load_dataset(**kwargs, streaming=spec.streaming, **spec.load_kwargs)
    except HubDataUnavailable:
        raise
    except Exception as err:
        _refuse_files_without_rows(spec, kwargs)
        local = (
            f" (as a local path: there is no folder {spec.path!r} in {os.getcwd()} either)"
            if spec.path.count("/") == 1 and not os.path.exists(spec.path)
            else ""
        )
        raise type(err)(f"source {spec.display_name!r}: load_dataset({kwargs}) failed: {err}{local}") from err
    if spec.split_column is not None:
        loaded = split_by_column(loaded, spec)
    if spec.pixels_size is not None:
        loaded = decode_pixel_strings(loaded, spec)
    return loaded


def _refuse_files_without_rows(spec: SourceSpec, kwargs: dict) -> None:
    """After a failed `load_dataset`: a data file without rows is the reason, said in one line."""
    try:
        data_files = datasets.load_dataset_builder(**kwargs, **spec.load_kwargs).config.data_files
    except Exception:  # not resolvable: the load's own error stands
        return
    empty = files_without_rows(data_files)
    if empty:
        raise ValueError(
            "; ".join(
                f"source {spec.display_name!r}, split {s!r}: {p} has no rows ({why})" for s, p, why in empty
            )
            + ". Fix or remove the file (a split needs at least one row)."
        )


def split_by_column(loaded, spec: SourceSpec) -> datasets.DatasetDict:
    """The rows of every loaded split regrouped by `spec.split_column` (FER-2013's `Usage`) into the splits
    `spec.split_map` names; `split_counts` on the result says how many rows each value had."""
    name, column = spec.display_name, spec.split_column
    if spec.streaming:
        raise ValueError(f"source {name!r}: split_column needs a map-style source; set `streaming: false`")
    parts = list(loaded.values())
    whole = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    if column not in whole.column_names:
        raise ValueError(
            f"source {name!r}: split_column {column!r} not found; columns are {whole.column_names}"
        )
    values = np.asarray([str(v).strip() for v in column_values(whole, column)])
    found, counts = np.unique(values, return_counts=True)
    mapping = {str(k): str(v) for k, v in (spec.split_map or {v: v for v in found}).items()}
    unknown = sorted(set(map(str, found)) - set(mapping))
    if unknown:
        raise ValueError(
            f"source {name!r}: column {column!r} has values {unknown} that split_map {mapping} does not name"
        )
    splits: dict[str, list[str]] = {}
    for value, split in mapping.items():
        splits.setdefault(split, []).append(value)
    result = datasets.DatasetDict(
        {
            split: whole.select(np.flatnonzero(np.isin(values, names))).remove_columns(column)
            for split, names in splits.items()
            if np.isin(values, names).any()
        }
    )
    result.split_counts = {  # type: ignore[attr-defined]
        "column": column,
        "rows": {str(v): int(n) for v, n in zip(found, counts)},
        "splits": {split: names for split, names in splits.items()},
    }
    return result


def decode_pixel_strings(loaded, spec: SourceSpec):
    """Every split's pixel-string column (`image_column`, default `pixels`) as PNG images of `pixels_size`."""
    name = spec.display_name
    size = pixels_size(spec.pixels_size, name)
    column = spec.image_column or "pixels"
    out = {}
    for split, ds in loaded.items():
        if column not in ds.column_names:
            raise ValueError(
                f"source {name!r}: the pixel column {column!r} not found (set image_column); columns are "
                f"{ds.column_names}"
            )
        features = ds.features.copy()
        features[column] = datasets.Image()
        kwargs = {} if spec.streaming else {"desc": f"{name} {split}: pixels to images"}
        out[split] = ds.map(
            PixelStrings(column, size, name, split),
            batched=True,
            with_indices=True,
            features=features,
            **kwargs,
        )
    result = (datasets.IterableDatasetDict if spec.streaming else datasets.DatasetDict)(out)
    if hasattr(loaded, "split_counts"):
        result.split_counts = loaded.split_counts  # type: ignore[attr-defined]
    return result


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
    if (
        not found
        and which == "label"
        and columns == ["image"]
        and (spec.path == "imagefolder" or spec.data_dir)
    ):
        raise ValueError(
            f"source {spec.display_name!r}: the image folder has no label column because its images sit in a "
            "single folder (one class), and `datasets` labels an image folder only by two or more class "
            "folders. A classifier needs at least two classes: arrange the images as <data_dir>/<split>/<class>/"
            "<image> with one folder per class."
        )
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
    return sorted(str(v) for v in ds.unique(column) if not is_missing_label(v))


def is_missing_label(value) -> bool:
    """None, NaN, or ClassLabel's -1: a row without a label."""
    return (
        value is None
        or (isinstance(value, float) and math.isnan(value))
        or (isinstance(value, int) and not isinstance(value, bool) and value < 0)
    )


def count_unlabeled(ds, column: str) -> int | None:
    """Rows whose label is missing (None, NaN, or -1 in a ClassLabel column); None for a streamed split."""
    if not isinstance(ds, datasets.Dataset):
        return None
    values = ds.data.column(column)
    missing = values.null_count
    if pa.types.is_floating(values.type):
        missing += int(pc.sum(pc.is_nan(values)).as_py() or 0)
    elif pa.types.is_integer(values.type):
        missing += int(pc.sum(pc.less(values, 0)).as_py() or 0)
    return missing


def mapped_label(label, lookup: dict, int_names: list[str] | None, where: str):
    """A source row's label through the label mapping (its class name, for an integer label, from
    `int_names`); `None` where the mapping drops the class. A name the mapping does not know is an error
    naming `where` (source, split, row)."""
    name = int_names[label] if int_names is not None else str(label)
    if name not in lookup:
        whole = name.removesuffix(".0")
        decimal = (
            f" (a number with a decimal point: {name!r} is not the code {whole!r})" if whole in lookup else ""
        )
        raise ValueError(
            f"{where}: label {name!r} was not in the label mapping {sorted(lookup)}{decimal}. Fix the data, or "
            "set `drop_unmapped: true` on the source to drop such rows (they are counted)."
        )
    return lookup[name]


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
        keep, labels, careful, bad = [], [], [], []
        for value, label, row in zip(batch["image"], batch["label"], indices):
            ok, convert = True, False
            if is_missing_label(label):  # counted before the map; here only dropped (drop_unlabeled)
                keep.append(False)
                labels.append(-1)
                careful.append(False)
                bad.append(False)  # no label is not an unreadable image
                continue
            if self.int_names is not None and not 0 <= label < len(self.int_names):
                raise ValueError(
                    f"source {self.source!r}, split {self.split!r}, row {row}: label {label} is outside the "
                    f"{len(self.int_names)} classes its ClassLabel declares (ids 0..{len(self.int_names) - 1}: "
                    f"{_preview(self.int_names)}). Fix the data, or declare every class in the ClassLabel."
                )
            if self.check_images:
                problem, convert = check_image(value) if value is not None else ("missing image", False)
                if problem is not None:
                    if self.on_bad_image == "error":
                        where = value.get("path") if value else None
                        raise ValueError(
                            f"source {self.source!r}, split {self.split!r}, row {row}: unreadable image "
                            f"({problem}){f' at {where}' if where else ''}. Set `on_bad_image: skip` to drop it."
                        )
                    ok = False
            if self.lookup is not None:
                label = mapped_label(
                    label,
                    self.lookup,
                    self.int_names,
                    f"source {self.source!r}, split {self.split!r}, row {row}",
                )
            labels.append(-1 if label is None else label)
            keep.append(ok)
            careful.append(ok and convert)
            bad.append(not ok)
        return {
            "label": labels,
            "source": [self.source] * len(keep),
            "_keep": keep,
            "_bad": bad,
            "_careful": careful,
        }


def _preview(names: list[str], n: int = 5) -> str:
    return ", ".join(map(str, names[:n])) + (", ..." if len(names) > n else "")


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
    if isinstance(ds, datasets.IterableDataset):
        return _prepare_stream(ds, spec, split, label_names, lookup, label_col, stats)
    unlabeled = count_unlabeled(ds, "label")
    if unlabeled and not spec.drop_unlabeled:
        raise ValueError(
            f"source {spec.display_name!r}, split {split!r}: {unlabeled} of {len(ds)} rows have no label "
            f"(None, NaN or -1 in column {label_col!r}). Fix the data, or set `drop_unlabeled: true` on the "
            "source to drop them (they are counted in the data report)."
        )
    int_names = label_names if isinstance(ds.features["label"], datasets.ClassLabel) else None
    fn = _Prepare(lookup, int_names, spec.display_name, split, on_bad_image)
    features = datasets.Features(
        {
            "image": datasets.Image(decode=False),
            "label": datasets.Value("int64"),
            "source": datasets.Value("string"),
            "_keep": datasets.Value("bool"),
            "_bad": datasets.Value("bool"),
            "_careful": datasets.Value("bool"),
        }
    )
    ds = ds.map(fn, batched=True, with_indices=True, features=features)
    bad = int(np.sum(column_values(ds, "_bad")))
    dropped = int(np.sum(column_values(ds, "label") == -1)) - (unlabeled or 0)
    stats[split] = {
        "rows_loaded": len(ds),
        "bad_images": bad,
        "unmapped_dropped": dropped,
        "unlabeled_dropped": unlabeled or 0,
    }
    if np.any(column_values(ds, "_careful")):
        # 16-bit, float or transparent images: converted like the pipeline converts them
        ds = ds.map(to_8bit_rgb, batched=True, input_columns=["image", "_careful"], features=ds.features)
    ds = ds.filter(_keep_row, batched=True, input_columns=["_keep", "label"]).remove_columns(
        ["_keep", "_bad", "_careful"]
    )
    ds = ds.cast_column("label", class_label)
    return ds.cast_column("image", datasets.Image(mode="RGB"))


class _LabelStream:
    """A streamed split's labels as they arrive: mapped onto the target classes, or coded for the loader
    to drop and count (`UNLABELED`, `UNMAPPED`) where the source asked for that; a row without a label
    otherwise stops the run, naming it. Images are checked by the loader, after the split by rank."""

    def __init__(self, lookup, int_names, spec: SourceSpec, split: str, column: str):
        self.lookup, self.int_names, self.split, self.column = lookup, int_names, split, column
        self.source, self.drop_unlabeled = spec.display_name, spec.drop_unlabeled

    def __call__(self, batch: pa.Table, indices: list[int]) -> pa.Table:
        """An Arrow batch in, an Arrow batch out: the stream stays in Arrow up to the loader, so reading,
        shuffling and the split by rank never build Python rows that the rank would then skip."""
        labels = []
        for label, row in zip(batch.column("label").to_pylist(), indices):
            if is_missing_label(label):
                if not self.drop_unlabeled:
                    raise ValueError(
                        f"source {self.source!r}, split {self.split!r} (streamed), row {row}: no label (None, "
                        f"NaN or -1 in column {self.column!r}). Fix the data, or set `drop_unlabeled: true` on "
                        "the source to drop such rows (they are counted as they stream)."
                    )
                labels.append(UNLABELED)
                continue
            if self.lookup is not None:
                where = f"source {self.source!r}, split {self.split!r} (streamed), row {row}"
                label = mapped_label(label, self.lookup, self.int_names, where)
            labels.append(UNMAPPED if label is None else int(label))
        return pa.table(
            {  # one storage type for every source (a folder's images are paths, a parquet file's bytes)
                "image": STREAM_FEATURES["image"].cast_storage(batch.column("image").combine_chunks()),
                "label": pa.array(labels, pa.int64()),
                "source": pa.array([self.source] * len(labels), pa.string()),
            }
        )


def _prepare_stream(ds, spec: SourceSpec, split: str, label_names, lookup, column: str, stats: dict):
    """The training split of a streamed source: encoded images, mapped labels, `source`
    (`streaming.STREAM_FEATURES`); decoding, the bad-image policy and the counts happen in the loader."""
    int_names = label_names if isinstance(ds.features["label"], datasets.ClassLabel) else None
    stats[split] = {
        "rows_loaded": None,
        "bad_images": None,
        "unmapped_dropped": None,
        "note": "streamed: counted as it streams (see `streamed`)",
    }
    fn = _LabelStream(lookup, int_names, spec, split, column)
    rows = ds.with_format("arrow").map(fn, batched=True, with_indices=True, features=STREAM_FEATURES)
    return rows.with_format(None)  # rows as Python dicts to whoever reads them; the loader asks for Arrow


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


def check_policy(on_bad_image: str) -> None:
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
