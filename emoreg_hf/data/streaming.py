"""A streamed training split, as the loader reads it: this rank's rows only, decoded, checked and augmented
as they stream past, with per-source counts.

`datasets.distributed.split_dataset_by_node` gives each rank (and, within a rank, each DataLoader worker)
disjoint rows: whole shards when their number divides the readers, else every N-th row. Everything
expensive (decoding, the bad-image check, augmentation) runs after that split, so a rank decodes only its
own rows; what runs before it (reading, label mapping, the shuffle buffer) touches encoded bytes only.

A row arrives as `image` (encoded), `label` (a class id; -1 for a row without a label and -2 for a label
the taxonomy cannot take, both dropped and counted because the source asked for it) and `source`.
The split repeats, reshuffled, until Trainer stops at `max_steps`, so every rank always has a next batch
(ranks that ran out of rows at different steps would fall out of step).
"""

from __future__ import annotations

import io
import itertools
import logging
from collections.abc import Iterator, Sequence

import datasets
import PIL.Image
import pyarrow
import torch
from datasets.distributed import split_dataset_by_node
from packaging import version

from .images import CAREFUL_MODES
from .schema import STREAM_FEATURES, UNLABELED, UNMAPPED
from .specs import SourceSpec
from .targets import resolve_target_spec

logger = logging.getLogger(__name__)

# datasets sleeps SLEEP_TIME_ON_THREADS_SHUTDOWN (5 s) at every end of a parquet stream's pass, exhausted or
# closed: its guard for apache/arrow#45214, a hang that its own parquet reader treats as fixed after pyarrow 24.
ARROW_SHUTDOWN_HANG_FIXED = version.parse(pyarrow.__version__) > version.parse("24.0.0")

# Per source: rows trained on, and rows dropped as they streamed (bad images, no label, no place in the taxonomy)
COUNTS = ("rows", "bad_images", "unlabeled_dropped", "unmapped_dropped")
BAD, DROPPED = 1, {UNLABELED: 2, UNMAPPED: 3}  # where each kind of dropped row is counted


def as_stream_rows(split: datasets.Dataset) -> datasets.IterableDataset:
    """A prepared map-style split (checked on loading) as rows of a stream (`STREAM_FEATURES`)."""
    rows = split.cast(STREAM_FEATURES).to_iterable_dataset().with_format("arrow")
    # Through an Arrow map like a streamed source's rows, so that their batches carry the same schema
    # (metadata included) and mix at the Arrow level.
    return rows.map(_same_rows, batched=True, features=STREAM_FEATURES).with_format(None)


def _same_rows(table):
    return table.replace_schema_metadata(None)  # e.g. the source Dataset's fingerprint


def decode_image(value, working_size: int) -> PIL.Image.Image:
    """Decode an encoded image fully (a truncated file raises here), large JPEGs straight at about the
    working size; 16-bit, float and transparent images are converted like the pipeline converts them."""
    data = value.get("bytes")
    image = PIL.Image.open(io.BytesIO(data) if data is not None else value["path"])
    if image.format == "JPEG" and min(image.size) > 2 * working_size:
        image.draft("RGB", (working_size, working_size))
    image.load()
    if image.mode in CAREFUL_MODES or (image.mode == "P" and "transparency" in image.info):
        from ..pipeline_emoreg import to_rgb

        image = to_rgb(image)
    return image


def without_shutdown_pause() -> None:
    """In a DataLoader worker only: no 5-s sleep at each end of a pass (it would stop training every pass;
    the worker is this process alone, so the main process keeps datasets' guard)."""
    if ARROW_SHUTDOWN_HANG_FIXED:
        datasets.config.SLEEP_TIME_ON_THREADS_SHUTDOWN = 0


class StreamedTrainSplit(torch.utils.data.IterableDataset):
    """Rows of a streamed training split as `{"pixel_values", "labels"}` for the Collator.

    `rows`: the split (`STREAM_FEATURES`); `transform`: the training `LoaderTransform`; `sources`: the names
    of the sources it mixes (for the counts); `on_bad_image`: `error` stops at the first unreadable image,
    naming it, `skip` drops and counts it. Call `assign(rank, world_size, num_workers)` before reading it
    (EmoRegTrainer does, when it builds the training loader).
    """

    def __init__(
        self,
        rows: datasets.IterableDataset,
        transform,
        *,
        sources: Sequence[str],
        on_bad_image: str = "error",
        chunk: int = 64,
    ):
        self.rows, self.transform, self.on_bad_image, self.chunk = rows, transform, on_bad_image, int(chunk)
        self.sources = list(sources)
        self.epoch, self.counted = 0, None
        self.assign(0, 1, 0)

    def assign(self, rank: int, world_size: int, num_workers: int) -> StreamedTrainSplit:
        """Read only rank `rank`'s share of `world_size`; counts start from zero, one row per loader worker
        in memory that the workers share with this process."""
        self.rank, self.world_size = int(rank), int(world_size)
        rows = self.rows.with_format("arrow")  # Arrow batches up to here: skipped rows cost next to nothing
        self.mine = split_dataset_by_node(rows, rank=self.rank, world_size=self.world_size)
        self.counts = torch.zeros(max(1, num_workers), len(self.sources), len(COUNTS), dtype=torch.int64)
        self.counts.share_memory_()
        return self

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def one_pass(self, part: datasets.IterableDataset | None = None) -> Iterator[dict]:
        """One pass over this rank's rows (or `part` of them), in the stream's (shuffled) order."""
        part = self.mine if part is None else part
        info = torch.utils.data.get_worker_info()
        row = self.counts[info.id if info is not None else 0].numpy()  # a view of the shared memory
        index = {name: i for i, name in enumerate(self.sources)}
        size = self.transform.working_size
        for batch in part.iter(batch_size=self.chunk):
            images, labels, kept = [], [], []
            columns = (batch.column(name).to_pylist() for name in ("image", "label", "source"))
            for value, label, source in zip(*columns):
                s = index[source]
                if label < 0:
                    row[s, DROPPED[label]] += 1
                    continue
                try:
                    image = decode_image(value, size)
                except Exception as error:  # PIL raises OSError, SyntaxError, ValueError ... for broken files
                    if self.on_bad_image == "error":
                        where = (value or {}).get("path")
                        raise ValueError(
                            f"source {source!r}, split 'train' (streamed): unreadable image "
                            f"({type(error).__name__}: {error}){f' at {where}' if where else ''}. "
                            "Set `on_bad_image: skip` to drop it."
                        ) from None
                    row[s, BAD] += 1
                    continue
                images.append(image)
                labels.append(label)
                kept.append(s)
                row[s, 0] += 1
            if images:
                out = self.transform({"image": images, "label": labels})
                yield from (
                    {"pixel_values": x, "labels": y, "source": s}
                    for x, y, s in zip(out["pixel_values"], out["labels"], kept)
                )

    def __iter__(self) -> Iterator[dict]:
        info = torch.utils.data.get_worker_info()
        if info is not None:
            without_shutdown_pause()
        part = self.mine
        if info is not None and info.num_workers > 1:  # each loader worker reads its own share of the rank's
            part = split_dataset_by_node(part, rank=info.id, world_size=info.num_workers)
        for repeat in itertools.count():
            part.set_epoch(self.epoch + repeat)  # a new shuffle order for every pass
            empty = True
            for example in self.one_pass(part):
                empty = False
                yield example
            if empty:
                if info is not None and info.num_workers > 1:
                    return  # this worker's share is empty; the rank's others read on (training checks the steps)
                raise ValueError(
                    f"the streamed training split gave no usable row to rank {self.rank} "
                    f"(of {self.world_size}){f', loader worker {info.id}' if info is not None else ''}: "
                    f"counts so far {self.tally_local()}"
                )

    def tally_local(self) -> dict[str, dict[str, int]]:
        """This process's counts (all its loader workers), per source."""
        total = self.counts.sum(0)
        return {name: dict(zip(COUNTS, map(int, total[i]))) for i, name in enumerate(self.sources)}

    def tally(self, accelerator=None, trained: torch.Tensor | None = None) -> dict[str, dict[str, int]]:
        """Counts per source over every rank (`accelerator.reduce`: every rank must call it), kept as
        `counted` for the data report. `trained`: rows per source that reached a training step on this rank
        (EmoRegTrainer counts them); without it, `rows` counts the rows read, read-ahead included."""
        total = self.counts.sum(0)
        if trained is not None:
            total[:, 0] = trained.to(total.device)
        if accelerator is not None and accelerator.num_processes > 1:
            total = accelerator.reduce(total.to(accelerator.device), reduction="sum").cpu()
        self.counted = {name: dict(zip(COUNTS, map(int, total[i]))) for i, name in enumerate(self.sources)}
        return self.counted

    def __repr__(self) -> str:
        return (
            f"StreamedTrainSplit(sources={self.sources}, rank={self.rank}/{self.world_size}, "
            f"transform={self.transform!r})"
        )


class KeepSources:
    """A collate function that stacks what `collate` stacks and adds each row's source index (`source`),
    so the training step can count rows per source (the loader's workers read ahead)."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, examples: list[dict]) -> dict:
        sources = torch.tensor([example.pop("source") for example in examples], dtype=torch.int64)
        return {**self.collate(examples), "source": sources}


def source_names(data_args) -> list[str]:
    """The names a recipe's training rows carry in `source`: its affective sources, or its target (stage 2's
    `dataset`, or stage 1's `target_dataset`, the positive control)."""
    if getattr(data_args, "affective_sources", None):
        return [SourceSpec.from_any(spec).display_name for spec in data_args.affective_sources]
    target = getattr(data_args, "target_dataset", None) or data_args.dataset
    return [resolve_target_spec(target).display_name]


def with_streamed_counts(report: dict, train) -> dict:
    """The data report with each source's counts as it streamed (rows trained on, over every rank, and rows
    dropped), once training has tallied them; a map-style training split leaves it as it is."""
    for name, counts in (getattr(train, "counted", None) or {}).items():
        report["sources"][name]["streamed"] = counts
        report["sources"][name]["train"] = counts["rows"]
    return report
