"""Run a recipe with a clock on every training step (benchmarks only): `python benchmarks/step_clock.py
OUT.json recipes/pretrain.py ARGS...` writes the time from the training loop's start to each optimizer
step's end, so a benchmark can tell steady-state speed from fixed costs (first batch, pass ends), and the
loop's start in unix time (to line it up with other clocks). Under torchrun every rank writes its own file:
`{rank}` in OUT is replaced by the rank."""

from __future__ import annotations

import json
import os
import runpy
import sys
import time
from pathlib import Path

import transformers


class StepClock(transformers.TrainerCallback):
    """Seconds since `on_train_begin` at the end of every step, written to `path` when training ends."""

    def __init__(self, path: str):
        self.path, self.start, self.start_unix, self.ends = path, None, None, []

    def on_train_begin(self, args, state, control, **kwargs):
        self.start, self.start_unix = time.perf_counter(), time.time()

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter() - self.start)

    def on_train_end(self, args, state, control, **kwargs):
        with open(self.path, "w") as out:
            json.dump({"step_ends_s": self.ends, "start_unix": self.start_unix}, out)


def rank_path(path: str) -> str:
    """`path` with `{rank}` replaced by this process's torchrun rank (0 without torchrun)."""
    return path.replace("{rank}", os.environ.get("RANK", "0"))


def main() -> None:
    path, script, *rest = sys.argv[1:]
    path = rank_path(path)
    original = transformers.Trainer.__init__

    def with_clock(self, *args, **kwargs):
        original(self, *args, **kwargs)
        self.add_callback(StepClock(path))

    transformers.Trainer.__init__ = with_clock
    sys.argv = [script, *rest]
    sys.path[0] = str(Path(script).resolve().parent)  # as `python script` would
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
