"""How long a recipe's `--help` takes, side by side with building `HfArgumentParser(TrainingArguments)` alone
(the yardstick: any recipe on transformers' argument parser pays at least that).

    python benchmarks/help_time.py [--repeats 7] [--scripts finetune pretrain]

Each repeat runs the yardstick and every script's `--help` in turn, each as a fresh process (start-up
included); the ratio is taken repeat by repeat, so a machine whose speed drifts still gives a fair one.
Prints the median wall-clock and CPU seconds (user + system) of each, and the median ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
YARDSTICK = [
    sys.executable,
    "-c",
    "from transformers import HfArgumentParser, TrainingArguments; HfArgumentParser(TrainingArguments).format_help()",
]


def timed(command: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child) of one run; the child's output is discarded."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--scripts", nargs="+", default=["finetune", "pretrain"])
    args = parser.parse_args()
    commands = {"HfArgumentParser(TrainingArguments)": YARDSTICK}
    commands.update({f"{s}.py --help": [sys.executable, f"recipes/{s}.py", "--help"] for s in args.scripts})
    env_note = f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    for command in commands.values():  # warm the file cache once
        timed(command)
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            runs[name].append(timed(command))
    yard = runs["HfArgumentParser(TrainingArguments)"]
    report = {"repeats": args.repeats, "python": sys.version.split()[0], "env": env_note, "commands": {}}
    for name, values in runs.items():
        wall = statistics.median(v[0] for v in values)
        cpu = statistics.median(v[1] for v in values)
        entry = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
        if values is not yard:
            entry["wall_ratio"] = round(statistics.median(a[0] / b[0] for a, b in zip(values, yard)), 2)
            entry["cpu_ratio"] = round(statistics.median(a[1] / b[1] for a, b in zip(values, yard)), 2)
        report["commands"][name] = entry
        ratios = (
            f"  ratio wall {entry['wall_ratio']:.2f}x, cpu {entry['cpu_ratio']:.2f}x"
            if "wall_ratio" in entry
            else ""
        )
        print(f"{name:40s} wall {wall:5.2f} s  cpu {cpu:5.2f} s{ratios}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
