"""Resident memory of a whole process tree over a run (benchmarks only): a launcher, its ranks and their loader
workers, sampled with psutil every 0.5 s, as RSS and as PSS (proportional set size: a page shared by k
processes counts 1/k in each, so the tree's PSS sum is what it holds, where the RSS sum counts every page a
forked loader worker shares with its rank once per process); the summary (peak of the sum, each process's peak, the sum over
windows of a period) is a pure function of the samples, so it is tested on made-up ones."""

from __future__ import annotations

import statistics
import threading
import time

GIB = 2**30


def role(depth: int, rank: str | None) -> str:
    """A process's part in a torchrun tree: the launcher (depth 0), a rank (1), a rank's child (2: a loader
    worker), anything deeper."""
    if depth == 0:
        return "agent"
    name = f"rank{rank}" if rank is not None else "process"
    return name if depth == 1 else f"{name} worker" if depth == 2 else f"{name} descendant"


def snapshot(root) -> list[dict]:
    """`{"pid", "role", "rss", "pss"}` of `root` (a psutil.Process) and every descendant alive now (`pss`
    falls back to `rss` where /proc/PID/smaps cannot be read)."""
    import psutil

    found, todo = [], [(root, 0, None)]
    while todo:
        proc, depth, rank = todo.pop()
        try:
            rss = proc.memory_info().rss
            try:
                pss = proc.memory_full_info().pss
            except (psutil.AccessDenied, AttributeError):
                pss = rss
            children = proc.children()
            if depth == 1:
                rank = proc.environ().get("RANK")
        except psutil.Error:  # it ended between two calls
            continue
        found.append({"pid": proc.pid, "role": role(depth, rank), "rss": rss, "pss": pss})
        todo.extend((child, depth + 1, rank) for child in children)
    return found


class TreeSampler:
    """Samples `snapshot(pid)` every `interval` s in a thread, from `start()` to `stop()`; `samples` are
    `{"t": unix time, "procs": [...]}`."""

    def __init__(self, pid: int, interval: float = 0.5):
        import psutil

        self.root, self.interval, self.samples = psutil.Process(pid), interval, []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            procs = snapshot(self.root)
            if procs:
                self.samples.append({"t": time.time(), "procs": procs})
            self._done.wait(self.interval)

    def start(self) -> TreeSampler:
        self._thread.start()
        return self

    def stop(self) -> list[dict]:
        self._done.set()
        self._thread.join()
        return self.samples


def tree_total(sample: dict, key: str = "rss") -> int:
    return sum(p.get(key, p["rss"]) for p in sample["procs"])


def tree_pss(sample: dict) -> int:
    return tree_total(sample, "pss")


def memory_summary(samples: list[dict], period: tuple[float, float] | None = None) -> dict:
    """Peak of the tree's summed RSS (and when, in s from the first sample), each process's peak (largest
    first), the sum over time, and, for `period` (start, end in unix time: training), the peak inside it and
    the median sum over its first, middle and last tenth, so growth during the run shows apart from loading
    and evaluation."""
    if not samples:
        raise ValueError("no memory sample was taken (the run ended before the first one?)")
    t0 = samples[0]["t"]
    peak = max(samples, key=tree_total)
    per_process: dict[int, dict] = {}
    for sample in samples:
        for p in sample["procs"]:
            entry = per_process.setdefault(
                p["pid"],
                {
                    "pid": p["pid"],
                    "role": p["role"],
                    "peak_rss": 0,
                    "peak_pss": 0,
                    "first_s": sample["t"] - t0,
                },
            )
            entry["peak_rss"] = max(entry["peak_rss"], p["rss"])
            entry["peak_pss"] = max(entry["peak_pss"], p.get("pss", p["rss"]))
            entry["last_s"] = sample["t"] - t0
    processes = sorted(per_process.values(), key=lambda e: -e["peak_rss"])
    summary = {
        "samples": len(samples),
        "peak_rss_tree_gib": round(tree_total(peak) / GIB, 3),
        "peak_at_s": round(peak["t"] - t0, 1),
        "peak_pss_tree_gib": round(max(map(tree_pss, samples)) / GIB, 3),
        "processes_at_peak": len(peak["procs"]),
        "max_process_rss_gib": round(processes[0]["peak_rss"] / GIB, 3),
        "processes": [
            {
                "pid": e["pid"],
                "role": e["role"],
                "peak_rss_gib": round(e["peak_rss"] / GIB, 3),
                "peak_pss_gib": round(e["peak_pss"] / GIB, 3),
                "first_s": round(e["first_s"], 1),
                "last_s": round(e["last_s"], 1),
            }
            for e in processes
        ],
    }
    if period is not None:
        summary["training"] = {
            "from_s": round(period[0] - t0, 1),
            "to_s": round(period[1] - t0, 1),
            **period_windows(samples, *period),
        }
    summary["tree_gib_over_time"] = [[round(s["t"] - t0, 1), round(tree_total(s) / GIB, 3)] for s in samples]
    return summary


def period_windows(samples: list[dict], start: float, end: float) -> dict:
    """Tree RSS (and PSS) within [start, end]: its peak and the median over the first, middle and last tenth
    (GiB; None for a window that holds no sample)."""
    if end <= start:
        raise ValueError(f"an empty period ({start} .. {end})")
    inside = [s for s in samples if start <= s["t"] <= end]
    tenth = (end - start) / 10

    def median(a: float, b: float, total=tree_total) -> float | None:
        values = [total(s) for s in inside if a <= s["t"] <= b]
        return round(statistics.median(values) / GIB, 3) if values else None

    middle = start + 4.5 * tenth
    return {
        "samples": len(inside),
        "peak_rss_tree_gib": round(max(map(tree_total, inside)) / GIB, 3) if inside else None,
        "first_tenth_gib": median(start, start + tenth),
        "middle_tenth_gib": median(middle, middle + tenth),
        "last_tenth_gib": median(end - tenth, end),
        "peak_pss_tree_gib": round(max(map(tree_pss, inside)) / GIB, 3) if inside else None,
        "first_tenth_pss_gib": median(start, start + tenth, tree_pss),
        "middle_tenth_pss_gib": median(middle, middle + tenth, tree_pss),
        "last_tenth_pss_gib": median(end - tenth, end, tree_pss),
    }
