"""The AffectNet-sized streaming benchmark's parts, at a tiny size: the generated data set (layout, schema,
determinism), the exact one-pass step count, and the summaries of memory samples and step times that its
figures come from. Nothing here streams a large data set or times anything."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # a spawned writer process finds the module again by name
    spec.loader.exec_module(module)
    return module


make_face_stream = load("make_face_stream")
tree_memory = load("tree_memory")
stream_scale = load("stream_scale")
step_clock = load("step_clock")

GIB = 2**30


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("faces")
    make_face_stream.write(out, rows=12, shard_rows=4, eval_rows=3, size=32, seed=7, log=lambda line: None)
    return out


def image_bytes(folder: Path, split: str) -> list[bytes]:
    files = sorted((folder / "data").glob(f"{split}-*.parquet"))
    return [row["bytes"] for f in files for row in pq.read_table(f).column("image").to_pylist()]


def test_the_generator_writes_the_hub_parquet_layout_that_datasets_streams(tiny):
    names = sorted(p.name for p in (tiny / "data").iterdir())
    assert names == [
        "test-00000-of-00001.parquet",
        "train-00000-of-00003.parquet",
        "train-00001-of-00003.parquet",
        "train-00002-of-00003.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert stream_scale.train_shards(tiny) == [4, 4, 4]
    streamed = datasets.load_dataset(str(tiny), streaming=True)
    assert set(streamed) == {"train", "validation", "test"}
    assert streamed["train"].num_shards == 3
    features = streamed["train"].features
    assert features["label"].names == list(make_face_stream.EXPRESSIONS)  # AffectNet's eight, in its order
    rows = list(streamed["train"])
    assert len(rows) == 12
    assert all(r["image"].size == (32, 32) and r["image"].mode == "RGB" for r in rows)
    assert [r["label"] for r in datasets.load_dataset(str(tiny), split="validation")] == [0, 1, 2]  # balanced


def test_a_row_depends_on_the_seed_and_its_index_only(tiny, tmp_path):
    again = tmp_path / "one-shard"
    make_face_stream.write(again, rows=12, shard_rows=12, eval_rows=3, size=32, seed=7, jobs=2, log=print)
    assert stream_scale.train_shards(again) == [12]
    assert image_bytes(again, "train") == image_bytes(tiny, "train")  # other shards, other process: same rows
    assert image_bytes(again, "test") == image_bytes(tiny, "test")
    other = tmp_path / "seed8"
    make_face_stream.write(other, rows=4, shard_rows=4, eval_rows=0, size=32, seed=8, log=print)
    assert not (other / "data" / "validation-00000-of-00001.parquet").exists()
    assert not set(image_bytes(other, "train")) & set(image_bytes(tiny, "train"))


def test_the_generator_refuses_uneven_shards_and_a_folder_with_data(tiny, capsys):
    with pytest.raises(ValueError, match="--rows 10 is not a multiple of --shard-rows 4"):
        make_face_stream.plan(10, 4, 0)
    with pytest.raises(ValueError, match="already holds parquet files"):
        make_face_stream.write(tiny, rows=4, shard_rows=4)
    with pytest.raises(SystemExit):
        make_face_stream.main([str(ROOT / "outputs" / "faces"), "--rows", "4", "--shard-rows", "4"])
    assert "outside the repository" in capsys.readouterr().err


def test_the_faces_compress_like_images_not_like_noise(tiny):
    sizes = [len(b) for b in image_bytes(tiny, "train")]
    assert all(400 < n < 3 * 32 * 32 for n in sizes)  # well under raw pixels, well over a flat colour


def test_one_pass_covers_every_shard_once_or_is_refused_saying_why():
    shards = {"faces": [250] * 12, "faces_second": [250] * 4}
    assert stream_scale.one_pass_steps(shards, ranks=2, workers=2, batch=100) == 20  # 4 readers x 1,000 rows
    assert stream_scale.one_pass_steps(shards, ranks=2, workers=0, batch=100) == 20  # 2 readers x 2,000
    affectnet = {"faces": [2500] * 120, "faces_second": [2500] * 4}  # the documented 300,000-row run
    assert stream_scale.one_pass_steps(affectnet, ranks=2, workers=2, batch=100) == 1550
    with pytest.raises(ValueError, match="shards of different sizes"):
        stream_scale.one_pass_steps({"faces": [250] * 12, "faces_second": [100] * 4}, 2, 2, 100)
    with pytest.raises(ValueError, match="14 training shards do not divide 4 readers"):
        stream_scale.one_pass_steps({"faces": [250] * 10, "faces_second": [250] * 4}, 2, 2, 100)
    with pytest.raises(ValueError, match="1,000 rows per reader are not a multiple of the batch \\(64\\)"):
        stream_scale.one_pass_steps(shards, 2, 2, 64)


def test_speed_windows_separate_the_first_batches_from_the_steady_rate():
    ends = [1.0 + 0.1 * i for i in range(20)]  # a 1-s first step, then 0.1 s per step
    windows = stream_scale.speed_windows(ends, images_per_step=200)
    assert windows["window_steps"] == 2
    assert windows["first_tenth_images_per_s"] == pytest.approx(400 / 1.1, abs=0.1)
    assert windows["middle_tenth_images_per_s"] == pytest.approx(2000, abs=0.1)
    assert windows["last_tenth_images_per_s"] == pytest.approx(2000, abs=0.1)
    assert windows["median_step_s"] == pytest.approx(0.1)
    slower = stream_scale.speed_windows([*ends[:18], ends[17] + 0.2, ends[17] + 0.4], 200)
    assert slower["last_tenth_images_per_s"] == pytest.approx(1000, abs=0.1)


def sample(t: float, *rss_gib: float) -> dict:
    roles = ["agent", "rank0", "rank1", "rank0 worker"]
    return {"t": t, "procs": [{"pid": i, "role": roles[i], "rss": r * GIB} for i, r in enumerate(rss_gib)]}


def test_memory_summary_takes_the_tree_sum_each_process_and_the_training_tenths():
    samples = [
        sample(100.0, 0.5, 1.0, 1.0),
        sample(101.0, 0.5, 1.0, 1.0, 0.5),  # training starts at 101
        *(sample(101.0 + i, 0.5, 1.2, 1.2, 0.6) for i in range(1, 10)),
        sample(111.0, 0.5, 1.5, 1.2, 0.7),  # training ends at 111
        sample(112.0, 0.5, 2.0, 2.0),  # evaluation: the peak, after training
    ]
    summary = tree_memory.memory_summary(samples, period=(101.0, 111.0))
    assert summary["peak_rss_tree_gib"] == 4.5 and summary["peak_at_s"] == 12.0
    assert summary["max_process_rss_gib"] == 2.0
    peaks = {p["role"]: p["peak_rss_gib"] for p in summary["processes"]}
    assert peaks == {"agent": 0.5, "rank0": 2.0, "rank1": 2.0, "rank0 worker": 0.7}
    worker = next(p for p in summary["processes"] if p["role"] == "rank0 worker")
    assert (worker["first_s"], worker["last_s"]) == (1.0, 11.0)
    assert summary["tree_gib_over_time"][0] == [0.0, 2.5] and summary["tree_gib_over_time"][-1] == [12.0, 4.5]
    training = summary["training"]
    assert (training["from_s"], training["to_s"]) == (1.0, 11.0)
    assert training["peak_rss_tree_gib"] == 3.9 and training["samples"] == 11
    assert training["first_tenth_gib"] == pytest.approx(3.25)  # samples at 101 and 102
    assert training["middle_tenth_gib"] == pytest.approx(3.5)
    assert training["last_tenth_gib"] == pytest.approx(3.7)  # samples at 110 and 111
    assert tree_memory.period_windows(samples[:1], 101.0, 111.0)["last_tenth_gib"] is None
    with pytest.raises(ValueError, match="no memory sample"):
        tree_memory.memory_summary([])


def test_roles_in_a_torchrun_tree():
    assert [tree_memory.role(d, "1") for d in range(4)] == [
        "agent",
        "rank1",
        "rank1 worker",
        "rank1 descendant",
    ]
    assert tree_memory.role(1, None) == "process"


def test_the_sampler_sees_this_process(tmp_path):
    import os

    found = tree_memory.snapshot(__import__("psutil").Process(os.getpid()))
    assert found[0]["pid"] == os.getpid() and found[0]["role"] == "agent" and found[0]["rss"] > 0
    assert 0 < found[0]["pss"] <= found[0]["rss"]  # proportional: shared pages count a share


def test_counts_compare_the_data_report_with_the_shards():
    report = {"sources": {"faces": {"streamed": {"rows": 3000, "bad_images": 0}}, "faces_second": {}}}
    counts = stream_scale.source_counts(report, {"faces": [250] * 12, "faces_second": [250] * 4})
    assert counts["faces"] == {"has": 3000, "trained": 3000, "exact": True, "rows": 3000, "bad_images": 0}
    assert counts["faces_second"] == {"has": 1000, "trained": None, "exact": False}


def run(rows: int, peak: float, training_peak: float, exact: bool = True) -> dict:
    return {
        "rows": {"faces": rows, "faces_second": 1000},
        "steps": 20,
        "wall_s": 60.0,
        "images_per_s": 400.0,
        "first_tenth_images_per_s": 170.0,
        "middle_tenth_images_per_s": 450.0,
        "last_tenth_images_per_s": 450.0,
        "steady_images_per_s": 470.0,
        "first_step_s": 1.9,
        "stall_count": 0,
        "stalls_s": 0.0,
        "memory": {
            "peak_rss_tree_gib": peak,
            "peak_pss_tree_gib": peak / 2,
            "max_process_rss_gib": 1.0,
            "training": {
                "peak_rss_tree_gib": training_peak,
                "peak_pss_tree_gib": training_peak / 2,
                "first_tenth_gib": 3.5,
                "middle_tenth_gib": 4.0,
                "last_tenth_gib": 4.0,
                "first_tenth_pss_gib": 1.75,
                "middle_tenth_pss_gib": 2.0,
                "last_tenth_pss_gib": 2.0,
            },  # fmt: skip
            "processes": [
                {"role": "rank0 worker", "peak_rss_gib": 0.6, "peak_pss_gib": 0.2},
                {"role": "rank0 worker", "peak_rss_gib": 0.7, "peak_pss_gib": 0.3},
            ],
        },
        "counts": {"faces": {"has": rows, "trained": rows if exact else rows - 1, "exact": exact}},
    }


def test_the_summary_and_the_markdown_say_whether_memory_stayed_flat():
    runs = [run(30_000, 5.0, 4.0), run(300_000, 5.2, 4.8)]
    summary = stream_scale.summarize(runs)
    assert summary["peak_rss_growth"] == pytest.approx(0.04)
    assert summary["training_peak_rss_growth"] == pytest.approx(0.2)
    assert summary["peak_pss_growth"] == pytest.approx(0.04)
    assert not summary["peak_growth_ok"]  # training grew by 20 %, although the whole command's peak did not
    assert summary["counts_exact"] and summary["last_over_middle_tenth"] == [1.0, 1.0]
    assert not stream_scale.summarize([run(30_000, 5.0, 4.0), run(300_000, 5.0, 4.0, exact=False)])[
        "counts_exact"
    ]
    payload = {"command": "python benchmarks/stream_scale.py ...", "ranks": 2, "workers": 2, "batch_size": 100,
               "machine": {"cpus": 2, "load_before": [1.0], "load_after": [1.0]}, "runs": runs, "summary": summary}  # fmt: skip
    text = stream_scale.markdown(payload)
    assert (
        "| 300,000 + 1,000 | 20 | 60 | 400 | 170 | 450 | 450 | 470 | 1.90 | 0, 0.0 | 2.600 / 2.4 | 1.75 / 2.0 / 2.0 "
        "| 5.200 / 4.8 | 1.000 |" in text
    )
    assert "| 301,000 | faces | 300,000 | 300,000 | True |" in text
    assert "| 31,000 | rank0 worker | 0.700 | 0.300 | 2 |" in text
    assert (
        "PSS 31,000 -> 301,000 rows: +4.0% over the whole command, +20.0% during training (target <= +10%: NOT met;"
        in text
    )


def test_the_step_clock_writes_each_step_end_and_the_loop_start(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert step_clock.rank_path(str(tmp_path / "steps-{rank}.json")) == str(tmp_path / "steps-1.json")
    clock = step_clock.StepClock(str(tmp_path / "steps.json"))
    clock.on_train_begin(None, None, None)
    clock.on_step_end(None, None, None)
    clock.on_step_end(None, None, None)
    clock.on_train_end(None, None, None)
    written = json.loads((tmp_path / "steps.json").read_text())
    assert len(written["step_ends_s"]) == 2 and written["step_ends_s"][0] <= written["step_ends_s"][1]
    assert written["start_unix"] > 1.7e9
