"""Write an AffectNet-sized stand-in data set for the streaming benchmarks (a benchmark tool, not shipped data).

    python benchmarks/make_face_stream.py /tmp/faces-300000 --rows 300000 --seed 0 --size 96

It writes the Hub's parquet layout, which `load_dataset(FOLDER, streaming=True)` reads like a Hub repository:

    FOLDER/data/train-00000-of-00120.parquet ... (`--shard-rows` rows each, 2,500 by default)
    FOLDER/data/validation-00000-of-00001.parquet, FOLDER/data/test-00000-of-00001.parquet (`--eval-rows` each)

with columns `image` (an encoded JPEG, as `datasets.Image` stores it) and `label` (a `ClassLabel` of AffectNet's
eight expressions, in AffectNet's order; the features are in the schema's metadata, as `push_to_hub` writes them).

Why these choices:

- **96 x 96 RGB JPEG** (`--size`): small face crops, as in downsized AffectNet copies (the original crops are
  larger; `--size 224` for those), about 2.3 KB each at JPEG quality 90.
- **Pixels that compress like faces, not noise**: a smooth random background, a skin-toned face ellipse with
  shading, eyes, brows and a mouth whose shape follows the label (so training has something to learn), and a
  little sensor grain. At 96 px and quality 90 uniform noise takes 8.9 KB a JPEG and a flat colour 0.8 KB.
- **Training labels drawn with AffectNet's class frequencies** (its 287,651 manually annotated training
  faces: neutral 74,874, happy 134,415, sad 25,459, surprise 14,090, fear 6,378, disgust 3,803, anger 24,882,
  contempt 3,750); validation and test are balanced, as AffectNet's validation set is (500 per class).
- **Equal shards**: every training shard holds `--shard-rows` rows (`--rows` must be a multiple of it), so a
  stream split into whole shards gives every reader (rank x loader worker) the same number of rows when the
  shard count divides the readers, and one pass can be counted exactly (benchmarks/stream_scale.py).
- **Deterministic and bounded**: each row is drawn from its own generator seeded by (`--seed`, split, row
  index), so a row does not depend on the shard size or on what was written before; one shard is in memory at
  a time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt")
AFFECTNET_TRAIN = (74_874, 134_415, 25_459, 14_090, 6_378, 3_803, 24_882, 3_750)  # manually annotated faces
SPLITS = {"train": 0, "validation": 1, "test": 2}  # part of each row's seed
JPEG_QUALITY = 90


def features():
    import datasets

    return datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=list(EXPRESSIONS))}
    )


def row_label(rng: np.random.Generator, split: str, index: int) -> int:
    """Training rows follow AffectNet's class frequencies; evaluation rows cycle through the classes."""
    if split != "train":
        return index % len(EXPRESSIONS)
    weights = np.asarray(AFFECTNET_TRAIN, dtype=np.float64)
    return int(rng.choice(len(EXPRESSIONS), p=weights / weights.sum()))


def _ellipse(xx, yy, cx, cy, rx, ry, soft):
    """1 inside the ellipse, 0 outside, a soft edge `soft` wide (in units of the radius)."""
    d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return np.clip((1 + soft - d) / (2 * soft), 0.0, 1.0)


@functools.cache
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    return tuple(np.meshgrid(axis, axis, indexing="ij"))


LIGHT_SKIN, DARK_SKIN = np.array([235, 200, 175], np.float32), np.array([85, 58, 45], np.float32)


def face(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A size x size x 3 uint8 face: smooth background, shaded face, eyes, brows, a mouth per expression."""
    import PIL.Image

    # the background: one colour with smooth variation (a 4x4 field, upsampled)
    base = rng.uniform(40, 200, size=3)
    low = np.clip(base + rng.normal(0, 30, size=(4, 4, 3)), 0, 255).astype(np.uint8)
    image = np.asarray(PIL.Image.fromarray(low).resize((size, size), PIL.Image.BICUBIC), dtype=np.float32)
    yy, xx = _grid(size)
    cx, cy = rng.normal(0, 0.06, size=2)
    rx, ry = rng.uniform(0.50, 0.62), rng.uniform(0.62, 0.78)
    tone = rng.uniform()
    skin = (LIGHT_SKIN * (1 - tone) + DARK_SKIN * tone) * rng.uniform(0.9, 1.1, size=3).astype(np.float32)
    light = 1.0 + 0.25 * (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))  # directional shading
    mask = _ellipse(xx, yy, cx, cy, rx, ry, 0.06)[..., None]
    image += (skin * light[..., None] - image) * mask
    eye_y, gap = cy - 0.2 * ry, rng.uniform(0.32, 0.42) * rx
    eye_r = {3: 0.13, 4: 0.13}.get(label, 0.09)  # surprise and fear: wide eyes
    tilt = {6: 0.5, 2: -0.5, 1: 0.0}.get(label, 0.15)  # anger: brows down to the middle; sadness: up
    marks = np.zeros_like(xx)  # eyes and brows, drawn in one dark colour
    for side in (-1, 1):
        ex = cx + side * gap
        marks = np.maximum(marks, _ellipse(xx, yy, ex, eye_y, eye_r, eye_r * 0.7, 0.3))
        marks = np.maximum(
            marks, _ellipse(xx, yy + side * tilt * (xx - ex), ex, eye_y - 0.2, 0.15, 0.03, 0.5)
        )
    curve = {1: 0.8, 2: -0.6, 5: -0.3, 6: -0.4}.get(label, 0.0)  # smile up, frown down
    raised = 0.25 if label == 7 else 0.0  # contempt: one corner raised
    mouth_y = cy + 0.42 * ry - curve * 0.25 * ((xx - cx) / (0.3 * rx)) ** 2 - raised * (xx - cx)
    opened = {3: 0.09, 4: 0.06}.get(label, 0.025)  # surprise and fear: an open mouth
    mouth = _ellipse(xx, yy - mouth_y + cy, cx, cy, 0.28 * rx, opened, 0.4)
    image += (np.float32(rng.uniform(20, 70)) - image) * marks[..., None]
    image += (np.float32(rng.uniform(60, 120)) - image) * mouth[..., None]
    image += rng.standard_normal(image.shape, dtype=np.float32) * 4.0  # sensor grain
    return np.clip(image, 0, 255).astype(np.uint8)


def encode(pixels: np.ndarray) -> bytes:
    import PIL.Image

    out = io.BytesIO()
    PIL.Image.fromarray(pixels).save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()


def make_row(seed: int, split: str, index: int, size: int) -> tuple[bytes, int]:
    rng = np.random.default_rng((seed, SPLITS[split], index))
    label = row_label(rng, split, index)
    return encode(face(rng, label, size)), label


def shard_name(split: str, shard: int, shards: int) -> str:
    return f"data/{split}-{shard:05d}-of-{shards:05d}.parquet"


def plan(rows: int, shard_rows: int, eval_rows: int) -> dict[str, list[tuple[int, int]]]:
    """Per split, the (first row, rows) of every shard; refuses a training size the shards do not divide."""
    if rows <= 0 or shard_rows <= 0 or eval_rows < 0:
        raise ValueError(f"--rows ({rows}) and --shard-rows ({shard_rows}) must be > 0, --eval-rows >= 0")
    if rows % shard_rows:
        raise ValueError(
            f"--rows {rows} is not a multiple of --shard-rows {shard_rows}: every training shard holds the same "
            "rows, so that a stream split into whole shards can be counted exactly"
        )
    shards = {"train": [(i * shard_rows, shard_rows) for i in range(rows // shard_rows)]}
    for split in ("validation", "test"):
        if eval_rows:
            shards[split] = [(0, eval_rows)]
    return shards


def write_shard(
    out: Path, split: str, shard: int, shards: int, first: int, count: int, seed: int, size: int
) -> dict:
    """Write one shard (to a partial name, then renamed: an interrupted run leaves no short shard)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = time.perf_counter()
    images, labels = zip(*(make_row(seed, split, first + i, size) for i in range(count)))
    table = pa.Table.from_pydict(
        {"image": [{"bytes": b, "path": None} for b in images], "label": list(labels)},
        schema=features().arrow_schema,  # the features in the metadata, as push_to_hub writes them
    )
    name = shard_name(split, shard, shards)
    partial = out / f"{name}.partial"
    pq.write_table(table, partial)  # one row group: a shard is well under datasets' 100 MB row group
    partial.replace(out / name)
    return {"file": name, "rows": count, "bytes": (out / name).stat().st_size,
            "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip


def write(out: Path, *, rows: int, seed: int = 0, size: int = 96, shard_rows: int = 2500, eval_rows: int = 2000,
          jobs: int = 1, log=print) -> list[dict]:  # fmt: skip
    """Write the data set under `out` (its `data/` must hold no parquet file yet), `jobs` shards at a time;
    returns one row per shard."""
    if size < 32:
        raise ValueError(f"--size {size}: faces need at least 32 px")
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: at least 1")
    layout = plan(rows, shard_rows, eval_rows)
    data = out / "data"
    if data.is_dir() and any(data.glob("*.parquet")):
        raise ValueError(f"{data} already holds parquet files: give an empty or new folder")
    data.mkdir(parents=True, exist_ok=True)
    tasks = [
        (out, split, shard, len(shards), first, count, seed, size)
        for split, shards in layout.items()
        for shard, (first, count) in enumerate(shards)
    ]
    written = []
    with multiprocessing.get_context("spawn").Pool(jobs) if jobs > 1 else contextlib.nullcontext() as pool:
        done = pool.imap(_write_task, tasks) if pool else map(_write_task, tasks)
        for row in done:  # in order; at most `jobs` shards in memory
            written.append(row)
            log(f"{row['file']}  {row['rows']:,} rows  {row['bytes']:,} bytes  {row['seconds']:.1f} s")
    return written


def _write_task(task: tuple) -> dict:
    return write_shard(*task)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", help="the folder to write (outside the repository)")
    parser.add_argument("--rows", type=int, default=300_000, help="training rows (default 300,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every row (default 0)")
    parser.add_argument("--size", type=int, default=96, help="image side in pixels (default 96)")
    parser.add_argument(
        "--shard-rows", type=int, default=2500, help="rows per training shard (default 2,500)"
    )
    parser.add_argument(
        "--eval-rows", type=int, default=2000, help="rows of validation and of test (default 2,000; 0: none)"
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="shards written at a time, in processes (default 1)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    if Path(__file__).resolve().parents[1] in (out, *out.parents):
        parser.error(f"{args.out}: write generated data outside the repository")
    start = time.perf_counter()
    try:
        written = write(out, rows=args.rows, seed=args.seed, size=args.size, shard_rows=args.shard_rows,
                        eval_rows=args.eval_rows, jobs=args.jobs,
                        log=functools.partial(print, flush=True))  # fmt: skip
    except ValueError as error:
        parser.error(str(error))
    train = [w for w in written if w["file"].startswith("data/train-")]
    print(
        f"{out}: {sum(w['rows'] for w in train):,} training rows in {len(train)} shards, "
        f"{sum(w['bytes'] for w in written):,} bytes in all, {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
