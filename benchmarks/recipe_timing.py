"""Run a recipe script in this process, unchanged, and time its training loop: step time and data wait.

    python benchmarks/recipe_timing.py --json timing.json --warmup_steps 20 -- \
        recipes/finetune.py recipes/vit-base-patch16/finetune_cifar100.yaml --max_steps 200 ...

Everything after `--` is the recipe command line, exactly as a user would run it. Before the recipe starts,
two timing hooks are installed on the classes it uses (nothing in the library changes):

- **data wait**: the wall time spent in `Trainer.get_batch_samples`, i.e. the host waiting for the next batch
  from the DataLoader (its workers, the collator, and accelerate's move of the uint8 batch to the device);
  the device-side finishing (resize + normalise) runs afterwards, inside the step, and counts as compute;
- **step time**: the wall time between consecutive `on_step_end` callbacks (one optimizer step, data wait
  included), from a `TrainerCallback` added to every `EmoRegTrainer` the recipe builds.

After `--warmup_steps` steps (compilation, cuDNN autotuning, worker start-up), it reports the median and
95th-percentile step time, images/s (global batch / median step), and the data-wait share = total wait /
total step time over the measured steps. A GPU keeps running while the host waits only as long as work is
queued, so on a GPU a nonzero share is time the device may idle.
"""

from __future__ import annotations

import argparse
import json
import runpy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class Timeline:
    def __init__(self):
        self.waits: dict[int, float] = {}  # optimizer step index (1-based) -> seconds waiting for data
        self.step_ends: list[float] = []
        self.batch_sizes: dict[int, int] = {}
        self.world_size = 1
        self.train_start: float | None = None


def install(timeline: Timeline) -> None:
    from transformers import Trainer, TrainerCallback

    from emoreg_hf.trainer import EmoRegTrainer

    original = Trainer.get_batch_samples

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        start = time.perf_counter()
        batches, count = original(self, epoch_iterator, num_batches, device)
        step = self.state.global_step + 1
        timeline.waits[step] = timeline.waits.get(step, 0.0) + time.perf_counter() - start
        timeline.batch_sizes[step] = sum(
            int(b["pixel_values"].shape[0]) for b in batches if "pixel_values" in b
        )
        return batches, count

    Trainer.get_batch_samples = get_batch_samples

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            timeline.train_start = time.perf_counter()
            timeline.world_size = args.world_size

        def on_step_end(self, args, state, control, **kwargs):
            timeline.step_ends.append(time.perf_counter())

    init = EmoRegTrainer.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.add_callback(StepClock())

    EmoRegTrainer.__init__ = __init__


def summarize(timeline: Timeline, warmup: int) -> dict:
    ends = [timeline.train_start, *timeline.step_ends] if timeline.train_start else []
    durations = {i: ends[i] - ends[i - 1] for i in range(1, len(ends))}  # step i (1-based)
    measured = [i for i in durations if i > warmup]
    if not measured:
        return {"error": f"only {len(durations)} steps ran; nothing after {warmup} warm-up steps"}
    steps = sorted(durations[i] for i in measured)
    total = sum(steps)
    wait = sum(timeline.waits.get(i, 0.0) for i in measured)
    median = statistics.median(steps)
    batch = statistics.median(timeline.batch_sizes.get(i, 0) for i in measured) * timeline.world_size
    worst = max(measured, key=lambda i: timeline.waits.get(i, 0.0))
    return {
        "steps_total": len(durations),
        "steps_measured": len(measured),
        "warmup_steps": warmup,
        "global_batch": batch,
        "step_s_median": median,
        "step_s_p95": steps[min(len(steps) - 1, int(0.95 * len(steps)))],
        "images_per_s": batch / median if median > 0 else None,
        "data_wait_s": wait,
        "step_time_s": total,
        "data_wait_share": wait / total if total > 0 else None,
        "worst_wait_step": worst,
        "worst_wait_s": timeline.waits.get(worst, 0.0),
        "first_steps_s": [round(durations[i], 4) for i in sorted(durations)[: warmup + 1]],
    }


def main() -> int:
    argv = sys.argv[1:]
    if "--" not in argv:
        print(__doc__, file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    parser.add_argument("--warmup_steps", type=int, default=20)
    args = parser.parse_args(argv[:split])
    recipe, *recipe_args = argv[split + 1 :]
    timeline = Timeline()
    install(timeline)
    sys.argv = [recipe, *recipe_args]
    sys.path.insert(0, str(Path(recipe).resolve().parent))
    started = time.perf_counter()
    runpy.run_path(recipe, run_name="__main__")
    summary = {"recipe": [recipe, *recipe_args], "wall_s": time.perf_counter() - started}
    summary.update(summarize(timeline, args.warmup_steps))
    try:
        import torch.distributed as dist

        rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
    except Exception:  # noqa: BLE001
        rank = 0
    if rank == 0:
        print(
            "recipe timing: "
            + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in summary.items()
                if k != "recipe"
            )
        )
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
