"""Where the matrix's runs execute: on this machine, one or several at a time (each on its own CPU threads or
its own GPUs), or on a Slurm cluster as job arrays. Every launcher runs the same recipe command per run (see
`runner.Cell`); a run that needs a stage-1 run starts only after it, and a finished run is never started again.

A run that gets several GPUs is started with `accelerate launch --multi_gpu` (one process per GPU, DDP), never
as one process that sees them all (Trainer would fall back to `nn.DataParallel`).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .runner import Cell, log_tail

Log = Callable[[str], None]


@dataclass
class Outcome:
    """What a launcher reports back: runs finished now (with their seconds), failures (each message names
    the run and its log), and runs a scheduler still holds (when the launcher does not wait)."""

    finished: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)


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


class LocalLauncher:
    """Runs on this machine, `parallel` at a time. On a machine with GPUs the GPUs are split evenly between
    the `parallel` slots (`CUDA_VISIBLE_DEVICES` per run; a slot of several GPUs runs its run with `accelerate
    launch --multi_gpu`); without GPUs each run gets `threads` CPU threads (default: the usable cores shared
    evenly). After a failure no new run starts; those already running finish."""

    name = "local"

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


# -- Slurm --------------------------------------------------------------------------------------------------

RUNNER_SBATCH_OPTIONS = ("array", "dependency", "output", "error", "parsable", "wait")
# Every run is requeue-friendly (recipes/launch.slurm: the warning signal -> checkpoint -> requeue -> resume);
# --sbatch.signal etc. change these.
DEFAULT_SBATCH_OPTIONS = {"signal": "B:USR1@300", "requeue": True, "open_mode": "append"}
JOBS_FILE = "jobs.json"  # <output_dir>/slurm/jobs.json: run -> the Slurm job that runs it


def sbatch_arguments(options: dict[str, Any]) -> list[str]:
    """`{"partition": "gpu", "cpus_per_task": 8, "exclusive": True}` -> `--partition=gpu --cpus-per-task=8
    --exclusive` (false or empty values are left out)."""
    args = []
    for key, value in options.items():
        name = key.replace("_", "-")
        if name in RUNNER_SBATCH_OPTIONS:
            raise ValueError(f"--sbatch.{key}: the runner sets --{name} itself")
        if value is True:
            args.append(f"--{name}")
        elif value not in (None, False, ""):
            args.append(f"--{name}={value}")
    return args


class SlurmLauncher:
    """Submits the runs as two Slurm job arrays: the runs that need no stage-1 run (every stage-1 run, and the
    baseline), then the stage-2 runs that read one, starting once the stage-1 jobs have ended (`afterany`; a
    run whose stage-1 run failed stops at once, saying so). Each array task runs `recipes/launch.slurm` on its
    run's YAML, so a pre-empted task checkpoints, is requeued and resumes. Runs already queued or running (from
    an earlier call) are not submitted again. With `wait`, polls `squeue` until every job has ended and collects
    the runs; without it, returns at once and the same command collects later."""

    name = "slurm"

    def __init__(
        self,
        sbatch_options: dict[str, Any] | None = None,
        *,
        wait: bool = True,
        accelerate_config: str = "auto",
        poll_seconds: float = 5.0,
    ):
        self.options = dict(sbatch_options or {})
        self.extra_args = sbatch_arguments({**DEFAULT_SBATCH_OPTIONS, **self.options})
        self.wait = wait
        self.accelerate_config = accelerate_config
        self.poll_seconds = poll_seconds

    def describe(self) -> str:
        extra = f" {' '.join(self.extra_args)}" if self.extra_args else ""
        return f"Slurm job arrays (sbatch{extra}; accelerate config {self.accelerate_config})"

    def execute(
        self, cells: list[Cell], *, root: Path, recipes_dir: Path, python: str, env: dict, log: Log
    ) -> Outcome:
        outcome = Outcome()
        if not cells:
            return outcome
        for tool in ("sbatch", "squeue"):
            if shutil.which(tool) is None:
                raise ValueError(f"--launcher slurm: {tool} is not on PATH (run on a Slurm login node)")
        folder = root.resolve() / "slurm"
        (folder / "logs").mkdir(parents=True, exist_ok=True)
        jobs = _read_jobs(folder / JOBS_FILE)
        active = _active_jobs([entry["job"] for entry in jobs.values()])
        busy = [
            f"  {cell.key}: Slurm job {jobs[cell.key]['job']}"
            for cell in cells
            if jobs.get(cell.key, {}).get("job") in active
            and jobs[cell.key].get("fingerprint") != cell.fingerprint
        ]
        if busy:  # its folder is in use: a second job there would clear or fight over it
            raise ValueError(
                "these runs are still queued or running with an earlier configuration of this matrix:\n"
                + "\n".join(busy)
                + "\nwait for them, or cancel them (scancel JOB), before submitting the new configuration"
            )
        in_flight, ended, to_submit = [], [], []
        for cell in cells:
            entry = jobs.get(cell.key) or {}
            same = entry.get("fingerprint") == cell.fingerprint
            if same and entry.get("job") in active:
                log(f"{cell.tag}: already queued or running as Slurm job {entry['job']}; not submitted again")
                in_flight.append(cell)
            elif same and cell.status() == "submitted":  # ended without a record since the last call
                ended.append(cell)  # reported now, submitted again by the next call
            else:
                to_submit.append(cell)
        failed_now = {cell.key for cell in ended}
        held = [cell for cell in to_submit if cell.run.needs in failed_now]
        to_submit = [cell for cell in to_submit if cell not in held]
        # The first array: stage-1 runs and the stage-2 runs that need none (the baseline). The second: stage-2
        # runs that read a stage-1 run; they wait for every stage-1 job of this matrix still queued or running
        # (afterany: a failed stage-1 run must not leave its dependants pending forever).
        stage1 = [c for c in to_submit if c.run.needs is None]
        stage2 = [c for c in to_submit if c.run.needs is not None]
        after = {jobs[c.key]["job"].split("_")[0] for c in in_flight if c.run.stage == "pretrain"}
        submit_env = {**os.environ, **env, "PYTHON": python}
        for stage, group in (("stage1", stage1), ("stage2", stage2)):
            if not group:
                continue
            for cell in group:
                cell.prepare(log)
            script = self._write_array_script(folder, stage, group, root, recipes_dir)
            dependency = (
                [f"--dependency=afterany:{':'.join(sorted(after))}"] if stage == "stage2" and after else []
            )
            command = [
                "sbatch",
                "--parsable",
                f"--array=0-{len(group) - 1}",
                f"--output={folder / 'logs' / '%x-%A_%a.out'}",
                *([] if "job_name" in self.options else [f"--job-name=emoreg-ablate-{stage}"]),
                *dependency,
                *self.extra_args,
                str(script),
            ]
            result = subprocess.run(command, capture_output=True, text=True, env=submit_env)
            if result.returncode != 0:
                raise ValueError(
                    f"sbatch refused the {stage} array ({shlex.join(command)}):\n{result.stderr.strip()}"
                )
            array_id = result.stdout.strip().split(";")[0]
            if stage == "stage1":
                after.add(array_id)
            for index, cell in enumerate(group):
                job = f"{array_id}_{index}"
                jobs[cell.key] = {"job": job, "fingerprint": cell.fingerprint, "script": str(script)}
                cell.write_marker("submitted", slurm_job=job)
            what = (
                "run(s) that need no stage-1 run" if stage == "stage1" else "stage-2 run(s) on stage-1 runs"
            )
            log(
                f"submitted {len(group)} {what} as Slurm array {array_id}"
                + (f" (starting after job(s) {', '.join(sorted(after))} end)" if dependency else "")
            )
            _write_jobs(folder / JOBS_FILE, jobs)
        for cell in ended:
            outcome.failures.append(self._failure(cell, jobs[cell.key]["job"], folder, log))
        if held:
            outcome.failures.append(
                "not submitted, since the stage-1 run each needs failed: " + ", ".join(c.key for c in held)
            )
        tracked = in_flight + to_submit
        ids = {cell.key: jobs[cell.key]["job"] for cell in tracked}
        if not self.wait:
            outcome.waiting = [cell.key for cell in tracked]
            if tracked:
                log(
                    f"{len(tracked)} run(s) queued or running on Slurm; run the same command again to collect "
                    "them (finished runs are never submitted again)"
                )
            return outcome
        try:
            self._wait(ids, log)
        except KeyboardInterrupt:
            log("stopped waiting: the Slurm jobs keep running; run the same command again to collect them")
            raise
        for cell in tracked:
            if cell.collect(log):
                outcome.finished.append(cell.key)
            else:
                outcome.failures.append(self._failure(cell, ids[cell.key], folder, log))
        return outcome

    @staticmethod
    def _failure(cell: Cell, job: str, folder: Path, log: Log) -> str:
        """A run whose job ended without a record: named, with its log, Slurm's end state and Slurm's own
        output when there is any. Marked failed: the next call submits it again."""
        state = _final_state(job)
        cell.write_marker("failed", slurm_job=job, slurm_state=state)
        log(f"{cell.tag}: FAILED (Slurm job {job}, {state}); log: {cell.log_file}")
        message = cell.failure(f"did not finish (Slurm job {job}, state {state})")
        slurm_out = next((folder / "logs").glob(f"*-{job}.out"), None)
        if slurm_out is not None and slurm_out.stat().st_size:
            message += f"\nSlurm's own output, {slurm_out}:\n{log_tail(slurm_out, 10)}"
        return message

    def _write_array_script(
        self, folder: Path, stage: str, group: list[Cell], root: Path, recipes_dir: Path
    ) -> Path:
        """One bash script per array: task i runs run i through recipes/launch.slurm, its output appended to
        the run's own log."""
        launcher = (Path(recipes_dir) / "launch.slurm").resolve()
        cases = []
        for index, cell in enumerate(group):
            needs = str((root / cell.run.needs).resolve()) if cell.run.needs else ""
            cases.append(
                f"    {index}) RUN={shlex.quote(str(cell.run.output_dir.resolve()))}; "
                f"STAGE={cell.run.stage}; NEEDS={shlex.quote(needs)} ;;"
            )
        body = "\n".join(
            [
                "#!/bin/bash",
                "# Written by emoreg_hf.ablation (recipes/ablate.py --launcher slurm): array task i runs the matrix's",
                "# run i through recipes/launch.slurm, appending to the run's own ablation_stdout.log.",
                "set -uo pipefail",
                'case "${SLURM_ARRAY_TASK_ID:?submit with sbatch --array}" in',
                *cases,
                '    *) echo "no run for array task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;',
                "esac",
                'exec >>"$RUN/ablation_stdout.log" 2>&1',
                'echo; echo "$ Slurm job ${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID} on $(hostname),'
                " restart ${SLURM_RESTART_COUNT:-0}, $(date '+%F %T')\"",
                "if [[ -n $NEEDS && ! -f $NEEDS/run_info.json ]]; then",
                '    echo "its stage-1 run $NEEDS did not finish (see $NEEDS/ablation_stdout.log): not started"',
                "    exit 3",
                "fi",
                f'exec bash {shlex.quote(str(launcher))} "$STAGE" "$RUN/ablation_run.yaml" '
                f"{shlex.quote(self.accelerate_config)} --overwrite_output_dir false",
                "",
            ]
        )
        path = folder / f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.sh"
        path.write_text(body)
        return path

    def _wait(self, ids: dict[str, str], log: Log) -> None:
        last = None
        while True:
            active = _active_jobs(list(ids.values()))
            left = [key for key, job in ids.items() if job in active]
            if not left:
                return
            running = sum(1 for key in left if active[ids[key]] == "RUNNING")
            status = f"{len(ids) - len(left)} of {len(ids)} run(s) ended, {running} running, {len(left) - running} waiting"
            if status != last:
                log(f"Slurm: {status}")
                last = status
            time.sleep(self.poll_seconds)


def _read_jobs(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_jobs(path: Path, jobs: dict) -> None:
    path.write_text(json.dumps(jobs, indent=2, sort_keys=True))


def _active_jobs(jobs: list[str]) -> dict[str, str]:
    """Job ids (array tasks as `A_i`) that Slurm still holds -> their state (PENDING, RUNNING, ...)."""
    arrays = sorted({job.split("_")[0] for job in jobs if job})
    if not arrays:
        return {}
    result = subprocess.run(
        ["squeue", "-h", "-r", f"--jobs={','.join(arrays)}", "-o", "%i %T"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 and "Invalid job id" not in result.stderr:
        raise RuntimeError(f"squeue failed: {result.stderr.strip()}")
    states = {}
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def _final_state(job: str) -> str:
    """How an ended job ended (COMPLETED, FAILED, CANCELLED, TIMEOUT, ...), while Slurm remembers it."""
    if shutil.which("scontrol") is None:
        return "state unknown"
    result = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True)
    for token in result.stdout.split():
        if token.startswith("JobState="):
            return token.split("=", 1)[1]
    return "state unknown"
