"""One loaded split brought to the schema (`image`, `label`, `source`): its image and label columns picked,
rows without a label counted, labels mapped onto the target classes, images checked (map-style) or left
to the loader (streamed), and the bad-image policy."""

from __future__ import annotations

import math
from collections.abc import Mapping

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .ferplus import DISTRIBUTION
from .images import check_image, to_8bit_rgb
from .schema import IMAGE_COLUMN_CANDIDATES, LABEL_COLUMN_CANDIDATES, STREAM_FEATURES, UNLABELED, UNMAPPED
from .specs import SourceSpec
from .splits import column_values


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
        num_classes: int | None = None,
    ):
        self.lookup, self.int_names, self.source, self.split = lookup, int_names, source, split
        self.on_bad_image, self.check_images = on_bad_image, check_images
        self.num_classes = num_classes  # of the run: a soft target (DISTRIBUTION) is mapped onto them

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        keep, labels, careful, bad = [], [], [], []
        soft = batch.get(DISTRIBUTION)
        mapped_soft = [] if soft is not None else None
        for i, (value, label, row) in enumerate(zip(batch["image"], batch["label"], indices)):
            if mapped_soft is not None:
                mapped_soft.append([0.0] * self.num_classes)
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
            if mapped_soft is not None and label is not None:
                mapped_soft[-1] = self._distribution(soft[i], row)
                label = int(np.argmax(mapped_soft[-1]))  # the soft target's top class (first of a tie)
            labels.append(-1 if label is None else label)
            keep.append(ok)
            careful.append(ok and convert)
            bad.append(not ok)
        out = {
            "label": labels,
            "source": [self.source] * len(keep),
            "_keep": keep,
            "_bad": bad,
            "_careful": careful,
        }
        if mapped_soft is not None:
            out[DISTRIBUTION] = mapped_soft
        return out

    def _distribution(self, values: list[float], row: int) -> list[float]:
        """A source-class distribution summed onto the run's classes (valence3 adds FER+'s negatives)."""
        out = [0.0] * self.num_classes
        for c, p in enumerate(values):
            if p > 0:
                name = self.int_names[c] if self.int_names is not None else str(c)
                j = self.lookup[name] if self.lookup is not None else c
                if j is None:
                    raise ValueError(
                        f"source {self.source!r}, split {self.split!r}, row {row}: its soft target gives "
                        f"{name!r} a share, but the label mapping drops that class; map it with `label_map` "
                        "or train on `label_mode: majority`"
                    )
                out[j] += float(p)
        return out


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
    soft = [DISTRIBUTION] if DISTRIBUTION in ds.column_names else []  # FER+ soft targets (ferplus.py)
    ds = ds.select_columns([image_col, label_col, *soft])
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
    fn = _Prepare(
        lookup, int_names, spec.display_name, split, on_bad_image, num_classes=class_label.num_classes
    )
    features = datasets.Features(
        {
            "image": datasets.Image(decode=False),
            "label": datasets.Value("int64"),
            "source": datasets.Value("string"),
            "_keep": datasets.Value("bool"),
            "_bad": datasets.Value("bool"),
            "_careful": datasets.Value("bool"),
            **({DISTRIBUTION: datasets.Sequence(datasets.Value("float32"))} if soft else {}),
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
    (`schema.STREAM_FEATURES`); decoding, the bad-image policy and the counts happen in the loader."""
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


def check_policy(on_bad_image: str) -> None:
    if on_bad_image not in ("error", "skip"):
        raise ValueError(f"on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
