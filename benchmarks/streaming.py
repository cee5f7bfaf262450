"""Streamed against map-style stage 1: peak memory and training images/s over 3,000 and 30,000 rows of a
real affective data set (a benchmark, not a test).

For each row count N and each mode it runs the recipe as a user would, in a subprocess:

    python recipes/pretrain.py --affective_sources '[{path: DATA, streaming: true|false}]' --max_steps N/batch ...

with a tiny ResNet at 48 px (so that the input path, not the model, sets the pace), `--dataloader_num_workers
W` in both modes, no evaluation or checkpoint during training, and the final evaluation on 256 images. Modes
alternate (map, stream, map, stream, ...) so that both see the same machine; with `--repeats` > 1 medians
are reported. Each run gets a fresh `datasets` cache: map-style pays its one-time conversion and image check
in its wall time, the training loop's images/s does not include it.

Figures per run: **images/s** = rows trained (`max_steps` x batch) / `train_runtime` (Trainer's training
loop); **peak RSS** = the largest sum of resident memory over the recipe's process tree (the trainer and its
DataLoader workers), sampled every 0.2 s; the wall time of the whole command.

Targets: the streamed run's peak RSS grows by at most 10% from 3,000 to 30,000 rows (memory does not follow
the data's size); streamed images/s >= 0.9 x map-style at the same worker count
(medians of >= 3 alternating runs). Beside the whole-loop figure: steady-state images/s (a batch over the
median step time, from a clock on every step, `step_clock.py`) and the fixed costs apart: time to the first
step's end and the stalls (steps over 5x the median: pass ends).

    python benchmarks/streaming.py --data /path/to/fer2013 --workers 2 --json outputs/streaming.json

`--data`: a FER-2013 copy in the Hub parquet layout (`data/{train,validation,test}-*.parquet`, columns
`image`, `label` with the seven expressions); any image-classification data set whose labels map onto
`--taxonomy` works.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_smoke import run_measured  # noqa: E402  (peak tree RSS by sampling, as in the scale smoke run)

MODEL = "{model_type: resnet, embedding_size: 16, hidden_sizes: [16, 32, 64], depths: [1, 1, 1], layer_type: basic}"


def command(data: str, streaming: bool, steps: int, out: Path, args) -> list[str]:
    source = json.dumps([{"path": data, "source": "fer2013", "streaming": streaming}])
    clock = [
        str(Path(__file__).resolve().parent / "step_clock.py"),
        str(out.parent / f"{out.name}-steps.json"),
    ]
    return [
        sys.executable, *clock, "recipes/pretrain.py", "--affective_sources", source, "--taxonomy", args.taxonomy,
        *training_arguments(steps, out, args),
    ]  # fmt: skip


def training_arguments(steps: int, out: Path, args) -> list[str]:
    """The stage-1 recipe's arguments both stream benchmarks train with (the tiny ResNet at 48 px, no
    evaluation or checkpoint during training, the final evaluation on 256 images)."""
    return [
        "--model_config", MODEL, "--image_size", "48", "--augmentation", "basic",
        "--max_steps", str(steps), "--per_device_train_batch_size", str(args.batch_size),
        "--dataloader_num_workers", str(args.workers), "--warmup_steps", "0", "--learning_rate", "0.002",
        "--eval_strategy", "no", "--save_strategy", "no", "--logging_steps", "50", "--report_to", "none",
        "--max_eval_samples", "256", "--per_device_eval_batch_size", "256", "--seed", "0",
        "--output_dir", str(out),
    ]  # fmt: skip


def run_once(mode: str, rows: int, args, work: Path, index: int) -> dict:
    steps = max(1, round(rows / args.batch_size))
    out = work / f"{mode}-{rows}-{index}"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": str(args.threads),
        "HF_DATASETS_CACHE": str(work / f"cache-{mode}-{rows}-{index}"),  # a fresh cache: cold, every run
        "PYTHONPATH": str(ROOT),
    }
    logs = work / f"logs-{mode}-{rows}-{index}"
    measured = run_measured(command(args.data, mode == "stream", steps, out, args), env, logs, 3600)
    if measured["returncode"] != 0:
        tail = (logs / "stderr.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"{mode} over {rows} rows failed ({measured['returncode']}):\n{tail}")
    results = json.loads((out / "all_results.json").read_text())
    trained = steps * args.batch_size
    row = {
        "mode": mode,
        "rows": rows,
        "steps": steps,
        "rows_trained": trained,
        "train_runtime_s": results["train_runtime"],
        "images_per_s": round(trained / results["train_runtime"], 1),
        "wall_s": measured["wall_s"],
        "peak_rss_tree_gib": measured["peak_rss_tree_gib"],
        "max_process_rss_gib": measured["max_process_rss_gib"],
    }
    row.update(step_figures(out.parent / f"{out.name}-steps.json", args.batch_size))
    if mode == "stream":  # what the data report counted as it streamed
        report = json.loads((out / "data_report.json").read_text())
        row["rows_counted"] = report["sources"]["fer2013"]["streamed"]["rows"]
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(env["HF_DATASETS_CACHE"], ignore_errors=True)
    print(json.dumps(row), flush=True)
    return row


def step_figures(path: Path, batch_size: int, skip: int = 5) -> dict:
    """Steady-state images/s (a batch over the median step time, the first `skip` steps left out) and the
    fixed costs: time to the first step's end (first batches, worker start) and the stalls, i.e. the time
    that steps over 5x the median took beyond it (pass ends, a worker's restart)."""
    ends = json.loads(path.read_text())["step_ends_s"]
    steps = [b - a for a, b in zip(ends, ends[1:])][skip:]
    median = statistics.median(steps)
    stalls = [s - median for s in steps if s > 5 * median]
    return {
        "steady_images_per_s": round(batch_size / median, 1),
        "first_step_s": round(ends[0], 3),
        "stall_count": len(stalls),
        "stalls_s": round(sum(stalls), 3),
    }


FIGURES = (
    "train_runtime_s",
    "images_per_s",
    "steady_images_per_s",
    "first_step_s",
    "stall_count",
    "stalls_s",
)


def median_rows(runs: list[dict]) -> dict:
    merged = dict(runs[0])
    for key in (*FIGURES, "wall_s", "peak_rss_tree_gib", "max_process_rss_gib"):
        merged[key] = round(statistics.median(r[key] for r in runs), 3)
    merged["repeats"] = len(runs)
    return merged


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", required=True, help="the data set (a local folder in the Hub parquet layout)"
    )
    parser.add_argument("--rows", default="3000,30000", help="row counts to train on (default 3000,30000)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers, both modes (default 2)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per mode and row count (medians; default 3)"
    )
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run (default 1)")
    parser.add_argument("--taxonomy", default="ekman7")
    parser.add_argument("--work", help="work folder (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep run folders and caches")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    if not Path(args.data).is_dir():
        parser.error(f"--data {args.data!r} is not a folder")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="emoreg-streaming-"))
    counts = [int(n) for n in args.rows.split(",")]

    runs: dict[tuple[str, int], list[dict]] = {}
    for index in range(args.repeats):  # modes alternate: map, stream, map, stream, ...
        for rows in counts:
            for mode in ("map", "stream"):
                runs.setdefault((mode, rows), []).append(run_once(mode, rows, args, work, index))
    table = {key: median_rows(value) for key, value in runs.items()}

    small, large = min(counts), max(counts)
    growth = table["stream", large]["peak_rss_tree_gib"] / table["stream", small]["peak_rss_tree_gib"] - 1
    ratios = {
        rows: table["stream", rows]["images_per_s"] / table["map", rows]["images_per_s"] for rows in counts
    }
    steady = {
        rows: table["stream", rows]["steady_images_per_s"] / table["map", rows]["steady_images_per_s"]
        for rows in counts
    }
    summary = {
        "stream_peak_rss_growth": round(growth, 4),
        "stream_peak_rss_growth_ok": growth <= 0.10,
        "stream_over_map_images_per_s": {str(k): round(v, 3) for k, v in ratios.items()},
        "stream_over_map_ok": all(v >= 0.9 for v in ratios.values()),
        "stream_over_map_steady_images_per_s": {str(k): round(v, 3) for k, v in steady.items()},
    }

    print(
        "\n| mode | rows trained | images/s | steady images/s | first step s | stalls (n, s) "
        "| peak RSS, tree (GiB) | largest process (GiB) | wall s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows in counts:
        for mode in ("map", "stream"):
            r = table[mode, rows]
            print(
                f"| {'map-style' if mode == 'map' else 'streamed'} | {r['rows_trained']:,} | {r['images_per_s']:,.0f} "
                f"| {r['steady_images_per_s']:,.0f} | {r['first_step_s']:.2f} | {r['stall_count']:.0f}, "
                f"{r['stalls_s']:.1f} | {r['peak_rss_tree_gib']:.3f} | {r['max_process_rss_gib']:.3f} | {r['wall_s']:.0f} |"
            )
    print(
        f"\nstreamed peak RSS {small:,} -> {large:,} rows: {growth:+.1%} (target <= +10%: "
        f"{'met' if summary['stream_peak_rss_growth_ok'] else 'NOT met'}); streamed / map-style images/s: "
        + ", ".join(f"{ratio:.2f}x at {rows:,}" for rows, ratio in ratios.items())
        + f" (target >= 0.9x: {'met' if summary['stream_over_map_ok'] else 'NOT met'}); steady state: "
        + ", ".join(f"{ratio:.2f}x at {rows:,}" for rows, ratio in steady.items())
    )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "command": " ".join(sys.argv).replace(args.data, "/path/to/fer2013"),  # no local path
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
            "workers": args.workers,
            "batch_size": args.batch_size,
            "runs": [r for value in runs.values() for r in value],
            "medians": [table[key] for key in table],
            "summary": summary,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2))
    if not args.work and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
