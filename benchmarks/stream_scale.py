"""Stage 1 streamed over AffectNet-sized data on 2 ranks x 2 loader workers: memory, speed over the run, and
the rows of every source counted exactly (a benchmark, not a test; issue 31, item 3).

    python benchmarks/make_face_stream.py /tmp/faces-second --rows 10000 --seed 1
    python benchmarks/make_face_stream.py /tmp/faces-30000 --rows 30000
    python benchmarks/make_face_stream.py /tmp/faces-300000 --rows 300000
    python benchmarks/stream_scale.py --data /tmp/faces-30000 /tmp/faces-300000 --second /tmp/faces-second

For each `--data` folder it runs the recipe as a user would, once:

    python -m torch.distributed.run --nproc_per_node 2 recipes/pretrain.py --affective_sources
        '[{path: DATA, source: faces, streaming: true}, {path: SECOND, source: faces_second, streaming: true}]'
        --taxonomy valence3 --dataloader_num_workers 2 --max_steps ONE_PASS ...

(gloo on CPU; the tiny ResNet at 48 px of benchmarks/streaming.py, so the input path sets the pace; no
evaluation or checkpoint during training, the final evaluation on 256 images), with a clock on every step
(`step_clock.py`, rank 0's) and psutil sampling the whole process tree every 0.5 s (`tree_memory.py`).

**One pass, counted exactly.** `ONE_PASS` is computed from the parquet files: every training shard of both
sources must hold the same rows (make_face_stream.py writes equal shards) and the shard count must divide
the 4 readers (rank x worker), so each reader gets whole shards and the same rows; when that is a multiple
of the batch, `max_steps` = rows per reader / batch x workers covers every row of both sources once. The
data report's rows trained per source must then equal the rows each source has; anything else is a
counting error, and the command exits 1.

Figures per run: **memory**: the peak of the tree's summed RSS (launcher, ranks, loader workers; over the
whole command, loading and evaluation included), each process's own peak, and the sum's median over the first,
middle and last tenth of training; **speed**: images/s (both ranks) over the whole loop (`train_runtime`),
over the first, middle and last tenth of the steps, and steady (the global batch over the median step time),
the time to the first step and the stalls (`streaming.step_figures`); **counts**: rows per source, had and
trained. Target (issue 31): the peak grows by at most 10% from the smallest to the largest `--data`.
Writes `stream_scale.json` and `stream_scale.md` under `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from scale_smoke import free_port  # noqa: E402
from streaming import step_figures, training_arguments  # noqa: E402
from tree_memory import TreeSampler, memory_summary  # noqa: E402

SOURCES = ("faces", "faces_second")  # the names the two sources carry in the data report


def train_shards(folder: str | Path) -> list[int]:
    """Rows of each training shard (`data/train-*.parquet`) of a folder in the Hub layout, from the footers."""
    import pyarrow.parquet as pq

    files = sorted(Path(folder).glob("data/train-*.parquet"))
    if not files:
        raise ValueError(f"{folder}: no data/train-*.parquet (write it with benchmarks/make_face_stream.py)")
    return [pq.read_metadata(f).num_rows for f in files]


def one_pass_steps(shards: dict[str, list[int]], ranks: int, workers: int, batch: int) -> int:
    """Optimizer steps (per rank) after which every reader has trained on its whole share once, or a
    ValueError saying which condition of an exact count fails. Each rank's loader takes a batch from each
    of its workers in turn, so a rank's steps are its workers' batches together."""
    sizes = {name: sorted(set(rows)) for name, rows in shards.items()}
    if len({n for rows in sizes.values() for n in rows}) != 1:
        raise ValueError(
            f"training shards of different sizes ({sizes} rows): a reader's share would depend on which "
            "shards it draws; write every source with the same --shard-rows"
        )
    size = next(iter(sizes.values()))[0]
    count, readers = sum(map(len, shards.values())), ranks * max(1, workers)
    if count % readers:
        raise ValueError(
            f"{count} training shards do not divide {readers} readers ({ranks} ranks x {workers} workers): "
            "datasets would split rows, not shards; change --rows or --shard-rows"
        )
    per_reader = count // readers * size
    if per_reader % batch:
        raise ValueError(
            f"{per_reader:,} rows per reader are not a multiple of the batch ({batch}): a batch would reach "
            "into the next pass; change --batch-size"
        )
    return per_reader // batch * max(1, workers)


def speed_windows(step_ends: list[float], images_per_step: int) -> dict:
    """Images/s over the first, middle and last tenth of the steps (from the loop's start, so the first
    tenth carries the first batches), and steady: a step's images over the median step time."""
    n = len(step_ends)
    if n < 2:
        raise ValueError(f"{n} step time(s): too few for windows")
    k = max(1, n // 10)

    def rate(a: int) -> float:  # steps a .. a+k-1
        began = step_ends[a - 1] if a > 0 else 0.0
        return round(k * images_per_step / (step_ends[a + k - 1] - began), 1)

    durations = [b - a for a, b in zip(step_ends, step_ends[1:])]
    return {
        "window_steps": k,
        "first_tenth_images_per_s": rate(0),
        "middle_tenth_images_per_s": rate((n - k) // 2),
        "last_tenth_images_per_s": rate(n - k),
        "median_step_s": round(statistics.median(durations), 5),
    }


def source_counts(report: dict, shards: dict[str, list[int]]) -> dict:
    """Per source: the rows it has (its training shards) and what the data report counted as trained on."""
    counts = {}
    for name, rows in shards.items():
        streamed = report["sources"][name].get("streamed") or {}
        has, trained = sum(rows), streamed.get("rows")
        counts[name] = {"has": has, "trained": trained, "exact": trained == has, **streamed}
    return counts


def command(sources: list[dict], steps: int, out: Path, clock: Path, args) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.ranks),
        "--master_port", free_port(), str(Path(__file__).resolve().parent / "step_clock.py"), str(clock),
        "recipes/pretrain.py", "--affective_sources", json.dumps(sources), "--taxonomy", "valence3",
        *training_arguments(steps, out, args),
    ]  # fmt: skip


def run_once(data: str, args, work: Path) -> dict:
    shards = {SOURCES[0]: train_shards(data), SOURCES[1]: train_shards(args.second)}
    steps = one_pass_steps(shards, args.ranks, args.workers, args.batch_size)
    rows = sum(shards[SOURCES[0]])
    out, clock, logs = work / f"run-{rows}", work / f"steps-{rows}-{{rank}}.json", work / f"logs-{rows}"
    sources = [{"path": str(Path(path).resolve()), "source": name, "streaming": True}
               for name, path in zip(SOURCES, (data, args.second))]  # fmt: skip
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "OMP_NUM_THREADS": str(args.threads),
        "HF_DATASETS_CACHE": str(work / f"cache-{rows}"),
        "PYTHONPATH": str(ROOT),
    }
    logs.mkdir(parents=True, exist_ok=True)
    print(f"{rows:,} + {sum(shards[SOURCES[1]]):,} rows: {steps} steps per rank ...", flush=True)
    start = time.perf_counter()
    with open(logs / "stdout.log", "w") as stdout, open(logs / "stderr.log", "w") as stderr:
        proc = subprocess.Popen(command(sources, steps, out, clock, args), cwd=ROOT, env=env, stdout=stdout,
                                stderr=stderr, start_new_session=True)  # fmt: skip
        sampler = TreeSampler(proc.pid, args.interval).start()
        try:
            returncode = proc.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
        samples = sampler.stop()
    wall = round(time.perf_counter() - start, 1)
    if returncode != 0:
        tail = (logs / "stderr.log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"the run over {rows:,} rows failed ({returncode}) after {wall} s:\n{tail}")
    ticks = json.loads(Path(str(clock).replace("{rank}", "0")).read_text())
    ends, images_per_step = ticks["step_ends_s"], args.batch_size * args.ranks
    results = json.loads((out / "all_results.json").read_text())
    report = json.loads((out / "data_report.json").read_text())
    row = {
        "rows": {name: sum(r) for name, r in shards.items()},
        "shards": {name: len(r) for name, r in shards.items()},
        "steps": steps,
        "images_per_step": images_per_step,
        "wall_s": wall,
        "train_runtime_s": results["train_runtime"],
        "images_per_s": round(steps * images_per_step / results["train_runtime"], 1),
        **speed_windows(ends, images_per_step),
        **step_figures(Path(str(clock).replace("{rank}", "0")), images_per_step),
        "memory": memory_summary(samples, (ticks["start_unix"], ticks["start_unix"] + ends[-1])),
        "counts": source_counts(report, shards),
    }
    if not args.keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(env["HF_DATASETS_CACHE"], ignore_errors=True)
    print(json.dumps({k: v for k, v in row.items() if k != "memory"}), flush=True)
    return row


def by_role(processes: list[dict]) -> dict[str, tuple[float, float, int]]:
    """Each kind of process (`tree_memory.role`): its largest RSS and PSS peaks and how many there were."""
    roles: dict[str, tuple[float, float, int]] = {}
    for p in processes:
        rss, pss, count = roles.get(p["role"], (0.0, 0.0, 0))
        roles[p["role"]] = (max(rss, p["peak_rss_gib"]), max(pss, p.get("peak_pss_gib", 0.0)), count + 1)
    return roles


def summarize(runs: list[dict]) -> dict:
    """Peak growth from the first run to the last (whole command, and training alone: the final evaluation's
    loader workers are the same at every size), whether every count was exact, speed at the end of each run
    against its middle."""
    small, large = runs[0]["memory"], runs[-1]["memory"]
    growth = large["peak_rss_tree_gib"] / small["peak_rss_tree_gib"] - 1
    training = large["training"]["peak_rss_tree_gib"] / small["training"]["peak_rss_tree_gib"] - 1
    pss = large["peak_pss_tree_gib"] / small["peak_pss_tree_gib"] - 1
    training_pss = large["training"]["peak_pss_tree_gib"] / small["training"]["peak_pss_tree_gib"] - 1
    return {
        "peak_rss_growth": round(growth, 4),
        "training_peak_rss_growth": round(training, 4),
        # judged on PSS, what the tree holds: the RSS sum counts pages shared by a rank and its forked workers
        # once per process
        "peak_pss_growth": round(pss, 4),
        "training_peak_pss_growth": round(training_pss, 4),
        "peak_growth_ok": max(pss, training_pss) <= 0.10,
        "counts_exact": all(c["exact"] for run in runs for c in run["counts"].values()),
        "last_over_middle_tenth": [
            round(r["last_tenth_images_per_s"] / r["middle_tenth_images_per_s"], 3) for r in runs
        ],
    }


def markdown(payload: dict) -> str:
    runs, summary = payload["runs"], payload["summary"]
    lines = [
        f"`{payload['command']}`", "",
        f"{payload['machine']['cpus']} CPUs, load average before {payload['machine']['load_before']}, after "
        f"{payload['machine']['load_after']}; {payload['ranks']} ranks x {payload['workers']} loader workers, "
        f"batch {payload['batch_size']} per rank.", "",
        "| rows (faces + second) | steps | wall s | images/s: loop | first tenth | middle | last tenth | steady "
        "| first step s | stalls (n, s) | peak PSS, tree GiB: all / training | training PSS first / middle / last "
        "tenth GiB | peak RSS sum, tree GiB: all / training | largest process RSS GiB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]  # fmt: skip
    for r in runs:
        m, t = r["memory"], r["memory"]["training"]
        lines.append(
            f"| {' + '.join(f'{n:,}' for n in r['rows'].values())} | {r['steps']} | {r['wall_s']:.0f} "
            f"| {r['images_per_s']:,.0f} | {r['first_tenth_images_per_s']:,.0f} | {r['middle_tenth_images_per_s']:,.0f} "
            f"| {r['last_tenth_images_per_s']:,.0f} | {r['steady_images_per_s']:,.0f} | {r['first_step_s']:.2f} "
            f"| {r['stall_count']}, {r['stalls_s']:.1f} | {m['peak_pss_tree_gib']:.3f} / {t['peak_pss_tree_gib']} "
            f"| {t['first_tenth_pss_gib']} / {t['middle_tenth_pss_gib']} / {t['last_tenth_pss_gib']} "
            f"| {m['peak_rss_tree_gib']:.3f} / {t['peak_rss_tree_gib']} | {m['max_process_rss_gib']:.3f} |"
        )
    lines += ["", "Rows per source, had and trained on (`data_report.json`, `sources.<name>.streamed.rows`):", "",
              "| run | source | has | trained | exact |", "|---|---|---:|---:|---|"]  # fmt: skip
    for r in runs:
        for name, c in r["counts"].items():
            lines.append(
                f"| {sum(r['rows'].values()):,} | {name} | {c['has']:,} | {c['trained']:,} | {c['exact']} |"
            )
    lines += ["", "Peak RSS and PSS per kind of process (GiB; the largest of them, and how many there were over the "
              "run: evaluation starts loader workers of its own):", "",
              "| run | process | peak RSS | peak PSS | processes |", "|---|---|---:|---:|---:|"]  # fmt: skip
    for r in runs:
        for name, (rss, pss, count) in by_role(r["memory"]["processes"]).items():
            lines.append(f"| {sum(r['rows'].values()):,} | {name} | {rss:.3f} | {pss:.3f} | {count} |")
    lines += [
        "",
        f"Peak tree PSS {sum(runs[0]['rows'].values()):,} -> {sum(runs[-1]['rows'].values()):,} rows: "
        f"{summary['peak_pss_growth']:+.1%} over the whole command, {summary['training_peak_pss_growth']:+.1%} "
        f"during training (target <= +10%: {'met' if summary['peak_growth_ok'] else 'NOT met'}; the RSS sum, "
        f"which counts the pages a rank shares with its forked workers once per process: "
        f"{summary['peak_rss_growth']:+.1%} / {summary['training_peak_rss_growth']:+.1%}); "
        f"counts exact: {summary['counts_exact']}; last / middle tenth images/s: {summary['last_over_middle_tenth']}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", nargs="+", required=True, help="the face streams, smallest first, one run each"
    )
    parser.add_argument("--second", required=True, help="the second, small source (same --shard-rows)")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="loader workers per rank (default 2)")
    parser.add_argument("--batch-size", type=int, default=100, help="per rank (default 100)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each rank (default 1)")
    parser.add_argument("--interval", type=float, default=0.5, help="memory sampling period, s (default 0.5)")
    parser.add_argument("--timeout", type=float, default=3600, help="per run, s (default 3600)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "stream_scale"))
    parser.add_argument("--work", help="work folder (default: a temporary one, removed)")
    parser.add_argument("--keep", action="store_true", help="keep run folders and caches")
    args = parser.parse_args()
    for folder in args.data:  # every run's data checked before the first one starts
        try:
            shards = {SOURCES[0]: train_shards(folder), SOURCES[1]: train_shards(args.second)}
        except ValueError as error:
            parser.error(str(error))
        try:
            one_pass_steps(shards, args.ranks, args.workers, args.batch_size)
        except ValueError as error:
            parser.error(f"--data {folder} with --second {args.second}: {error}")
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="emoreg-stream-scale-"))
    load_before = [round(x, 2) for x in os.getloadavg()]
    runs = [run_once(data, args, work) for data in args.data]
    payload = {
        "command": " ".join(["python", "benchmarks/stream_scale.py", *sys.argv[1:]]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": [round(x, 2) for x in os.getloadavg()],
        },
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "ranks": args.ranks,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "runs": runs,
        "summary": summarize(runs),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream_scale.json").write_text(json.dumps(payload, indent=2))
    (out / "stream_scale.md").write_text(markdown(payload))
    print(markdown(payload))
    if not args.work and not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if payload["summary"]["counts_exact"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
