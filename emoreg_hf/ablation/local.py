"""Runs on this machine (`LocalLauncher`): one or several at a time, each on its own CPU threads or its own GPUs.

A run that gets several GPUs is started with `accelerate launch --multi_gpu` (one process per GPU, DDP), never
as one process that sees them all (Trainer would fall back to `nn.DataParallel`).
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .cell import Cell, Log, Outcome


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as `CUDA_VISIBLE_DEVICES` names them (empty without CUDA)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return []
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    if named is not None:
        return [d.strip() for d in named.split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def free_port() -> int:
    """A TCP port free right now on this machine, for one run's rendezvous."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def integer(launch: dict, name: str) -> int | None:
    """Option `name` of `launch` as a whole number (None when not given)."""
    if name not in launch:
        return None
    try:
        return int(launch[name])
    except ValueError:
        raise ValueError(f"--{name}: expected a whole number, got {launch[name]!r}") from None


class LocalLauncher:
    """Runs on this machine, `parallel` at a time. On a machine with GPUs the GPUs are split evenly between
    the `parallel` slots (`CUDA_VISIBLE_DEVICES` per run; a slot of several GPUs runs its run with `accelerate
    launch --multi_gpu`); without GPUs each run gets `threads` CPU threads (default: the usable cores shared
    evenly). After a failure no new run starts; those already running finish."""

    name = "local"
    summary = "this machine (the default)"  # `--launcher`'s help
    arguments = {  # its `ablate.py --KEY VALUE` options: metavar, help
        "parallel": (
            "N",
            "runs at once (default 1); GPUs are shared evenly between them, without GPUs the CPU cores",
        ),
        "threads": ("N", "CPU threads per run (default: cores / parallel)"),
        "devices": ("0,1,..|cpu", "the GPUs to use (default: every visible one); `cpu` trains on the CPU"),
    }

    def __init__(
        self, parallel: int = 1, *, threads: int | None = None, devices: Sequence[str] | None = None
    ):
        if parallel < 1:
            raise ValueError(f"--parallel must be >= 1, got {parallel}")
        if threads is not None and threads < 1:
            raise ValueError(f"--threads must be >= 1, got {threads}")
        self.parallel = parallel
        self.chosen_devices = devices is not None  # then CUDA_VISIBLE_DEVICES is set, "" for the CPU
        self.devices = visible_gpus() if devices is None else [str(d) for d in devices]
        if self.devices:
            if len(self.devices) % parallel:
                raise ValueError(
                    f"--parallel {parallel} cannot share {len(self.devices)} GPU(s) ({','.join(self.devices)}) "
                    f"evenly: use a divisor of {len(self.devices)}, or choose the GPUs with --devices"
                )
            per_run = len(self.devices) // parallel
            self.slots = [self.devices[i * per_run : (i + 1) * per_run] for i in range(parallel)]
        else:
            self.slots = [[] for _ in range(parallel)]
        self.threads = threads or max(1, usable_cpus() // parallel)

    @classmethod
    def from_options(cls, launch: dict, sbatch: dict) -> LocalLauncher:
        """From `ablate.py`'s options (strings, as typed): `--parallel`, `--threads`, `--devices`."""
        devices = launch.get("devices")
        if devices is not None:
            devices = (
                [] if devices.strip().lower() in ("cpu", "none", "") else devices.replace(" ", "").split(",")
            )
        parallel = integer(launch, "parallel")
        return cls(1 if parallel is None else parallel, threads=integer(launch, "threads"), devices=devices)

    def describe(self) -> str:
        if self.devices:
            gpus = len(self.slots[0])
            how = "accelerate launch --multi_gpu" if gpus > 1 else "one process"
            return f"{self.parallel} at a time here, {gpus} GPU(s) each ({how})"
        return f"{self.parallel} at a time here, {self.threads} CPU thread(s) each"

    def slot_env(self, slot: int) -> dict[str, str]:
        env = {"OMP_NUM_THREADS": str(self.threads), "MKL_NUM_THREADS": str(self.threads)}
        if self.devices or self.chosen_devices:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.slots[slot])  # "" hides every GPU: a CPU run
        return env

    def command(self, cell: Cell, recipes_dir: Path, python: str, slot: int) -> list[str]:
        """`python recipe ...` on one GPU or the CPU; `accelerate launch --multi_gpu` on several GPUs."""
        gpus = len(self.slots[slot])
        if gpus <= 1:
            return [python, *cell.recipe_args(recipes_dir)]
        return [
            python,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            str(gpus),
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",  # the recipe's --bf16 / --fp16 decide
            "--dynamo_backend",
            "no",
            "--num_cpu_threads_per_process",
            str(self.threads),
            "--main_process_port",
            str(free_port()),
            *cell.recipe_args(recipes_dir),
        ]

    def execute(
        self, cells: list[Cell], *, root: Path, recipes_dir: Path, python: str, env: dict, log: Log
    ) -> Outcome:
        outcome = Outcome()
        keys = {cell.key for cell in cells}
        waiting, done, failed = list(cells), set(), set()
        running: dict[int, tuple[Cell, subprocess.Popen, float, Any]] = {}
        free = list(range(self.parallel))
        try:
            while waiting or running:
                while free and waiting and not failed:
                    ready = next(
                        (
                            c
                            for c in waiting
                            if c.run.needs is None or c.run.needs not in keys or c.run.needs in done
                        ),
                        None,
                    )
                    if ready is None:
                        break
                    waiting.remove(ready)
                    slot = free.pop(0)
                    running[slot] = self._start(ready, slot, recipes_dir, python, env, log)
                if not running:
                    break
                slot = _wait_for_any(running)
                cell, process, started, out = running.pop(slot)
                out.close()
                free.append(slot)
                seconds = time.time() - started
                if process.returncode == 0 and cell.collect(log, seconds):
                    done.add(cell.key)
                    outcome.finished.append(cell.key)
                    outcome.seconds[cell.key] = seconds
                else:
                    failed.add(cell.key)
                    cell.write_marker("failed", exit_code=process.returncode)
                    log(f"{cell.tag}: FAILED (exit code {process.returncode}); log: {cell.log_file}")
                    reason = f"failed (exit code {process.returncode}) after {seconds:.0f} s"
                    outcome.failures.append(cell.failure(reason))
        except BaseException:
            for _, process, _, _ in running.values():  # Ctrl-C or an error here: no run left behind
                process.terminate()
            for _, process, _, _ in running.values():
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
            raise
        if waiting:
            outcome.failures.append(
                "not started after the failure above: " + ", ".join(c.key for c in waiting)
            )
        return outcome

    def _start(self, cell: Cell, slot: int, recipes_dir: Path, python: str, env: dict, log: Log):
        cell.prepare(log)
        command = self.command(cell, recipes_dir, python, slot)
        slot_env = self.slot_env(slot)
        where = f"GPU {slot_env['CUDA_VISIBLE_DEVICES']}" if self.devices else f"{self.threads} thread(s)"
        verb = "resuming" if cell.resuming else "running"
        log(f"{cell.tag}: {verb} on {where}  ({shlex.join(command[1:])})")
        out = open(cell.log_file, "a")  # noqa: SIM115 (closed when the run ends)
        out.write(f"\n$ {shlex.join(command)}\n")
        out.flush()
        cell.write_marker("running")
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env, **slot_env}
        )
        return cell, process, time.time(), out


def _wait_for_any(running: dict) -> int:
    while True:
        for slot, (_, process, _, _) in running.items():
            if process.poll() is not None:
                return slot
        time.sleep(0.2)
