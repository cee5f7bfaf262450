"""The schema every source is brought to (`image`, `label`, `source`) and the names and codes the data
modules share: how a source's own columns and splits may be called, the builders that read local files,
the label codes of rows dropped as they stream, and the shuffle buffer of a stream."""

from __future__ import annotations

import datasets

IMAGE_COLUMN_CANDIDATES = ("image", "img", "pixel_values", "picture", "photo")
LABEL_COLUMN_CANDIDATES = ("label", "labels", "emotion", "fine_label", "class", "category")
VALIDATION_SPLIT_NAMES = ("validation", "valid", "val", "dev")
PACKAGED_BUILDERS = ("imagefolder", "parquet", "csv", "json", "arrow", "webdataset")  # read local files

UNLABELED, UNMAPPED = -1, -2  # label codes of rows dropped (and counted) at the source's request
SHUFFLE_BUFFER = 1_000  # rows each reader holds to shuffle a stream (datasets' default): encoded bytes only
STREAM_FEATURES = datasets.Features(
    {
        "image": datasets.Image(decode=False),
        "label": datasets.Value("int64"),
        "source": datasets.Value("string"),
    }
)
