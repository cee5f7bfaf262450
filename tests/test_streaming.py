"""Streamed sources (`streaming: true`): split across ranks and loader workers, decoded after the split,
counted per source as they stream, with the label mapping and the bad-image policy of map-style sources;
and both recipes trained on a stream with `max_steps`."""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import datasets
import numpy as np
import pytest
import torch
from data_fixtures import write_parquet
from PIL import Image
from test_run_safety import recipe

from emoreg_hf.data import LoaderTransform, load_affective_mixture, load_target_dataset
from emoreg_hf.data.streaming import StreamedTrainSplit

FACES = ["angry", "happy", "neutral", "sad"]


def coded_png(value: int) -> bytes:
    """An 8x8 grey image whose every pixel is `value`: the row's id survives decoding and resizing."""
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8), value, np.uint8), "L").save(buffer, format="PNG")
    return buffer.getvalue()


def face_parquet(root: Path, n_train: int, *, labels=None, broken=(), names=FACES) -> Path:
    """A parquet source with its own validation split; train row i shows the grey value i."""
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    labels = labels if labels is not None else [i % len(names) for i in range(n_train)]
    images = [
        {"bytes": b"\xff\xd8 not an image" if i in broken else coded_png(i), "path": None}
        for i in range(n_train)
    ]
    write_parquet(
        root / "data" / "train-00000-of-00001.parquet", {"image": images, "label": labels}, features
    )
    val = [{"bytes": coded_png(200 + i), "path": None} for i in range(8)]
    write_parquet(
        root / "data" / "validation-00000-of-00001.parquet",
        {"image": val, "label": [i % 4 for i in range(8)]},
        features,
    )
    return root


def grey_ids(rows) -> list[int]:
    return [int(row["pixel_values"][0, 0, 0]) for row in rows]


def test_a_stream_is_split_across_ranks_and_workers_once_per_pass(tmp_path):
    source = {"path": str(face_parquet(tmp_path / "faces", 23)), "source": "faces", "streaming": True}
    splits, report = load_affective_mixture([source], "valence3")
    assert isinstance(splits["train"], datasets.IterableDataset) and len(splits["validation"]) == 8
    stream = StreamedTrainSplit(splits["train"], LoaderTransform(8), sources=["faces"])

    seen = []
    for rank in (0, 1):
        mine = grey_ids(stream.assign(rank, 2, num_workers=0).one_pass())
        assert stream.tally_local()["faces"]["rows"] == len(mine)
        seen.append(mine)
    assert sorted(seen[0] + seen[1]) == list(range(23)) and not set(seen[0]) & set(seen[1])
    assert {len(seen[0]), len(seen[1])} == {11, 12}

    # Two loader workers per rank: 4 readers, each with its own rows; the pass stays whole and disjoint.
    seen = []
    for rank, share in ((0, 12), (1, 11)):  # every 4th row from offsets 2 * rank and 2 * rank + 1
        stream.assign(rank, 2, num_workers=2)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
        seen.append(grey_ids(itertools.islice(loader, share)))
        assert stream.tally_local()["faces"]["rows"] >= share  # the workers' counts reach this process
    assert sorted(seen[0] + seen[1]) == list(range(23)) and not set(seen[0]) & set(seen[1])


def test_streamed_rows_follow_the_label_mapping_and_the_bad_image_policy(tmp_path):
    labels = [0, 1, 2, 3, 1, 1, 0, 3, 2, 1]  # angry, happy, neutral, sad, ...
    root = face_parquet(tmp_path / "faces", 10, labels=labels, broken={4})
    spec = {"path": str(root), "source": "faces", "streaming": True}
    splits, _ = load_affective_mixture([spec], "valence3")
    stream = StreamedTrainSplit(splits["train"], LoaderTransform(8), sources=["faces"], on_bad_image="error")
    with pytest.raises(ValueError, match=r"source 'faces', split 'train' \(streamed\): unreadable image"):
        list(stream.one_pass())

    # label_map drops "neutral" (counted as unmapped); the broken image is skipped and counted
    splits, _ = load_affective_mixture(
        [{**spec, "label_map": {"neutral": None}, "drop_unmapped": True}], "valence3"
    )
    stream = StreamedTrainSplit(splits["train"], LoaderTransform(8), sources=["faces"], on_bad_image="skip")
    rows = list(stream.one_pass())
    valence = {"angry": 0, "happy": 2, "sad": 0}  # negative, neutral, positive
    expected = {i: valence[FACES[y]] for i, y in enumerate(labels) if i != 4 and FACES[y] != "neutral"}
    assert dict(zip(grey_ids(rows), (int(r["labels"]) for r in rows))) == expected
    assert stream.tally_local()["faces"] == {
        "rows": len(expected),
        "bad_images": 1,
        "unlabeled_dropped": 0,
        "unmapped_dropped": 2,
    }


def test_a_streamed_target_keeps_its_classes_and_evaluates_map_style(tmp_path):
    root = face_parquet(tmp_path / "target", 12, names=["cat", "dog", "owl", "emu"])
    splits = load_target_dataset({"path": str(root), "streaming": True})
    assert isinstance(splits["train"], datasets.IterableDataset)
    assert isinstance(splits["validation"], datasets.Dataset) and len(splits["validation"]) == 8
    assert splits["validation"].features["label"].names == ["cat", "dog", "owl", "emu"]
    stream = StreamedTrainSplit(splits["train"], LoaderTransform(8), sources=["target"])
    assert sorted(grey_ids(stream.one_pass())) == list(range(12))


def test_a_stream_without_max_steps_or_with_epochs_is_refused_before_any_data_is_read(tmp_path):
    stream = "[{path: 'demo:synthetic-faces', streaming: true}]"
    code, _, err = recipe("pretrain.py", "--affective_sources", stream, "--output_dir", tmp_path / "r")
    assert code == 2 and "'synthetic-faces' streams (streaming: true)" in err
    assert "--max_steps N" in err and "--eval_strategy epoch: use steps" in err
    assert "Nothing was loaded or trained" in err and not (tmp_path / "r").exists()
    code, _, err = recipe(
        "finetune.py", "--dataset", "{path: 'demo:synthetic-target', streaming: true}", "--max_steps", "3",
        "--eval_strategy", "steps", "--output_dir", tmp_path / "f",
    )  # fmt: skip
    assert code == 2 and "--save_strategy epoch: use steps" in err and "--max_steps" not in err
    code, _, err = recipe(
        "pretrain.py", "--affective_sources", stream, "--kmeans_labels", "true", "--max_steps", "3",
        "--eval_strategy", "steps", "--save_strategy", "steps", "--output_dir", tmp_path / "k",
    )  # fmt: skip
    assert code == 2 and "--kmeans_labels clusters every training image first" in err


@pytest.mark.slow
def test_stage_one_on_a_streamed_target_the_positive_control(tmp_path):
    target = "{path: 'demo:synthetic-target', streaming: true}"
    code, _, err = recipe(
        "pretrain.py", "--target_dataset", target, "--affective_sources", "null", "--max_steps", "3", "--eval_strategy", "steps",
        "--save_strategy", "no", "--report_to", "none", "--per_device_train_batch_size", "8",
        "--max_eval_samples", "32", "--output_dir", tmp_path / "p",
    )  # fmt: skip
    assert code == 0, err[-4000:]
    record = json.loads((tmp_path / "p" / "run_info.json").read_text())
    assert record["datasets"][0]["split_sizes"]["train"] == 3 * 8
    assert record["data_report"]["sources"]["synthetic-target"]["streamed"]["rows"] == 3 * 8


# Which rows reach a training step on each rank (a coded image's grey value is its row id), and which loader
# workers read for which rank; each process appends to PATH.trained.<rank> / PATH.readers.
RECORD_ROWS = """
import torch
import emoreg_hf.trainer as trainer
from emoreg_hf.data.streaming import StreamedTrainSplit

step = trainer.EmoRegTrainer.training_step
def recording_step(self, model, inputs, *args, **kwargs):
    with open(f"{path}.trained.{{self.args.process_index}}", "a") as out:
        out.write(" ".join(str(int(v)) for v in inputs["pixel_values"][:, 0, 0, 0]) + "\\n")
    return step(self, model, inputs, *args, **kwargs)
trainer.EmoRegTrainer.training_step = recording_step

iterate = StreamedTrainSplit.__iter__
def reading(self):
    info = torch.utils.data.get_worker_info()
    with open("{path}.readers", "a") as out:
        out.write(f"{{self.rank}} {{info.id if info else None}}\\n")
    yield from iterate(self)
StreamedTrainSplit.__iter__ = reading
"""


@pytest.mark.slow
def test_both_recipes_train_on_a_stream_with_max_steps_on_two_ranks(tmp_path):
    """Stage 1 on a streamed source mixed with a map-style one, then stage 2 (EmoReg on that stage 1) on a
    streamed target, each on 2 gloo ranks x 2 loader workers (torchrun). Every row trained on is counted once,
    per source, over the ranks; stage 2's 64 coded rows are one pass: each rank trains its own half."""
    from test_distributed import patched_recipe, torchrun

    steps = ["--max_steps", "4", "--eval_strategy", "steps", "--save_strategy", "no", "--report_to", "none"]
    two_workers = ["--per_device_train_batch_size", "8", "--dataloader_num_workers", "2"]
    sources = "[{path: 'demo:synthetic-faces', streaming: true, weight: 1}, {path: 'demo:synthetic-scenes', weight: 1}]"
    result = torchrun(
        "recipes/pretrain.py", "--affective_sources", sources, *steps, *two_workers,
        "--max_eval_samples", "32", "--output_dir", tmp_path / "pretrain",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads((tmp_path / "pretrain" / "data_report.json").read_text())
    streamed = {name: stats["streamed"] for name, stats in report["sources"].items()}
    assert sum(counts["rows"] for counts in streamed.values()) == 4 * 2 * 8  # steps x ranks x batch
    assert all(counts["rows"] > 0 and counts["bad_images"] == 0 for counts in streamed.values())
    record = json.loads((tmp_path / "pretrain" / "run_info.json").read_text())
    assert record["hyperparameters"]["world_size"] == 2
    assert {d["name"]: d["split_sizes"]["train"] for d in record["datasets"]} == {
        name: counts["rows"] for name, counts in streamed.items()
    }

    # 64 rows = 4 steps x 2 ranks x 8: each rank's half, each of its workers a quarter, 2 batches each
    target = face_parquet(tmp_path / "target", 64, names=["cat", "dog", "owl", "emu"])
    seen = tmp_path / "seen"
    result = torchrun(
        patched_recipe(tmp_path, "record_rows", RECORD_ROWS.format(path=seen)), "recipes/finetune.py",
        "--dataset", f"{{path: '{target}', streaming: true}}", *steps, *two_workers, "--augmentation", "none",
        "--affect_model_name_or_path", tmp_path / "pretrain", "--output_dir", tmp_path / "finetune",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    trained = [[int(i) for i in Path(f"{seen}.trained.{rank}").read_text().split()] for rank in (0, 1)]
    assert [len(rows) for rows in trained] == [4 * 8, 4 * 8]
    assert sorted(trained[0] + trained[1]) == list(range(64))  # disjoint halves, every row once
    readers = set(Path(f"{seen}.readers").read_text().splitlines())
    assert {"0 0", "0 1", "1 0", "1 1"} <= readers  # both loader workers of both ranks read
    record = json.loads((tmp_path / "finetune" / "run_info.json").read_text())
    assert record["hyperparameters"]["world_size"] == 2 and record["method"] == "emoreg"
    # the rows trained on, summed over the ranks (stage 2 records no per-source report: one source)
    assert record["datasets"][0]["split_sizes"]["train"] == 64 and record["results"]["train_samples"] == 64
    assert "eval_accuracy" in record["results"]


def test_class_balancing_a_stream_is_refused_before_any_data_is_read():
    """Balanced weights and the balanced sampler count the training labels first; a stream has none to count."""
    from types import SimpleNamespace

    from emoreg_hf.training_options import check_streaming

    steps = SimpleNamespace(
        max_steps=3, eval_strategy="steps", save_strategy="steps", logging_strategy="steps"
    )
    stream = [{"path": "demo:synthetic-faces", "streaming": True}]
    check_streaming(steps, stream)  # a stream with max_steps and step schedules is fine
    with pytest.raises(
        ValueError, match="--class_weighting / --class_balanced_sampler count the training labels"
    ):
        check_streaming(steps, stream, class_balance=True)
    check_streaming(steps, [{"path": "demo:synthetic-faces"}], class_balance=True)  # map-style: counted


def face_folder(root: Path, n_train: int, *, truncated: int) -> Path:
    """An imagefolder source (train/ and validation/, one folder per class) of 12x12 JPEGs; train image
    `truncated` is cut short, so PIL cannot even read its header."""
    for split, n in (("train", n_train), ("validation", 4)):
        for i in range(n):
            path = root / split / FACES[i % len(FACES)] / f"{i:03d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (12, 12), (i, 2 * i, 3 * i)).save(path, format="JPEG")
            if split == "train" and i == truncated:
                path.write_bytes(path.read_bytes()[:100])
    return root


def test_a_truncated_jpeg_in_a_stream_follows_on_bad_image_in_the_size_inference(tmp_path, caplog):
    """The size (and colour) inference samples the stream's first rows: a truncated JPEG there stops with
    one message naming its source and file (`error`), or is left out (`skip`), as the loader treats it."""
    from emoreg_hf.data import infer_color_mode, infer_working_size

    root = face_folder(tmp_path / "faces", 8, truncated=5)
    spec = {"path": "imagefolder", "data_dir": str(root), "source": "faces", "streaming": True}
    splits, _ = load_affective_mixture([spec], "valence3")
    bad = str(root / "train" / FACES[1] / "005.jpg")
    for infer in (
        lambda: infer_working_size(splits["train"], 224),
        lambda: infer_color_mode(splits["train"]),
    ):
        with pytest.raises(
            ValueError, match=r"source 'faces', split 'train' \(streamed\), file .*005\.jpg"
        ) as info:
            infer()
        assert "unreadable image (OSError: Truncated File Read)" in str(info.value) and bad in str(info.value)
        assert "on_bad_image: skip" in str(info.value)
    with caplog.at_level("WARNING"):
        assert infer_working_size(splits["train"], 224, on_bad_image="skip") == 12
        assert infer_color_mode(splits["train"], on_bad_image="skip") == "rgb"
    assert (
        "skipped 1 unreadable image(s) of 8 sampled (on_bad_image: skip)" in caplog.text
        and bad in caplog.text
    )


def test_a_truncated_jpeg_in_a_stream_stops_the_recipe_with_one_message(tmp_path):
    root = face_folder(tmp_path / "faces", 8, truncated=5)
    source = f"[{{path: imagefolder, data_dir: '{root}', source: faces, streaming: true}}]"
    code, _, err = recipe(
        "pretrain.py", "--affective_sources", source, "--max_steps", "2", "--eval_strategy", "steps",
        "--save_strategy", "steps", "--report_to", "none", "--output_dir", tmp_path / "r",
    )  # fmt: skip
    assert code == 2, err[-3000:]
    assert (
        "pretrain.py: error: infer_color_mode: unreadable image (OSError: Truncated File Read) at source "
        in err
    )
    assert "'faces', split 'train' (streamed), file " in err and "005.jpg" in err and "Traceback" not in err
    assert (
        not list((tmp_path / "r").glob("checkpoint-*"))
        and not (tmp_path / "r" / "model.safetensors").exists()
    )


def test_a_loader_worker_ends_its_passes_without_datasets_five_second_sleep(tmp_path, monkeypatch):
    """datasets sleeps 5 s at every end of a parquet stream's pass (its apache/arrow#45214 guard); in a
    loader worker that stops training every pass, so the worker sets the sleep to 0; the main process keeps it."""
    calls = tmp_path / "sleeps.txt"

    def record(seconds):  # the worker is a forked copy of this process: it writes what it would sleep
        with calls.open("a") as out:
            out.write(f"{torch.utils.data.get_worker_info() is not None} {seconds}\n")

    monkeypatch.setattr(datasets.iterable_dataset, "time", SimpleNamespace(sleep=record))
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 5)
    source = {"path": str(face_parquet(tmp_path / "faces", 23)), "source": "faces", "streaming": True}
    splits, _ = load_affective_mixture([source], "valence3")
    stream = StreamedTrainSplit(splits["train"], LoaderTransform(8), sources=["faces"])

    loader = torch.utils.data.DataLoader(stream.assign(0, 1, num_workers=1), batch_size=None, num_workers=1)
    assert (
        len(grey_ids(itertools.islice(loader, 60))) == 60
    )  # two whole passes of 23 rows and part of a third
    in_worker = [line.split() for line in calls.read_text().splitlines()]
    assert in_worker and all(worker == "True" and float(seconds) == 0 for worker, seconds in in_worker)

    calls.unlink()
    assert len(grey_ids(stream.assign(0, 1, num_workers=0).one_pass())) == 23
    assert {line for line in calls.read_text().splitlines()} == {
        "False 5"
    }  # the main process keeps the guard
