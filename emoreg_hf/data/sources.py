"""Loading one source: any image-classification data set through ``datasets.load_dataset`` (from the Hub,
or from the local cache when the Hub is out of reach), its rows regrouped by a split column, its pixel
strings decoded and FER+ votes joined when the spec asks, and its training and validation splits found."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
from typing import Any

import datasets
import numpy as np

from .demo import resolve_demo_path
from .ferplus import join_votes, without_soft_targets
from .images import PixelStrings, pixels_size
from .schema import PACKAGED_BUILDERS, VALIDATION_SPLIT_NAMES
from .specs import SourceSpec
from .splits import column_values, files_without_rows

logger = logging.getLogger(__name__)


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
    votes_report = None
    if spec.votes is not None:  # FER+: labels from the votes file, joined by row before the split
        if spec.streaming:
            raise ValueError(
                f"source {spec.display_name!r}: votes needs a map-style source; set `streaming: false`"
            )
        loaded, votes_report = join_votes(loaded, spec)
    if spec.split_column is not None:
        loaded = split_by_column(loaded, spec)
    if spec.pixels_size is not None:
        loaded = decode_pixel_strings(loaded, spec)
    if votes_report is not None:
        counts = getattr(loaded, "split_counts", None)
        loaded = without_soft_targets(loaded)
        loaded.votes_report = votes_report  # type: ignore[attr-defined]
        if counts is not None:
            loaded.split_counts = counts  # type: ignore[attr-defined]
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
