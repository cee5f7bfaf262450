"""Runs on a Slurm cluster (`SlurmLauncher`): the matrix as two job arrays through `recipes/launch.slurm`,
requeue-friendly, collected by waiting or by the same command later."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .cell import Cell, Log, Outcome, log_tail

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
    summary = "Slurm job arrays"  # `--launcher`'s help
    arguments = {  # its `ablate.py --KEY VALUE` options: metavar, help (`sbatch.KEY`: any sbatch option)
        "sbatch.KEY": (
            "VALUE",
            "an sbatch option for every run, e.g. --sbatch.partition gpu --sbatch.gres gpu:1 "
            "--sbatch.time 04:00:00 --sbatch.cpus_per_task 8",
        ),
        "accelerate_config": (
            "NAME",
            "recipes/launch.slurm's accelerate config per run (default auto: ddp over the job's GPUs, cpu without)",
        ),
        "wait": (
            "BOOL",
            "wait for the jobs and write the report (default true); false submits and returns, and the same "
            "command collects later",
        ),
    }

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

    @classmethod
    def from_options(cls, launch: dict, sbatch: dict) -> SlurmLauncher:
        """From `ablate.py`'s options (strings, as typed): `--sbatch.KEY`, `--accelerate_config`, `--wait`."""
        wait = str(launch.get("wait", "true")).lower()
        if wait not in ("true", "false"):
            raise ValueError(f"--wait must be true or false, got {launch['wait']!r}")
        return cls(sbatch, wait=wait == "true", accelerate_config=launch.get("accelerate_config", "auto"))

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
