"""Run folders as publishing reads them: the run record (scrubbed for publication), the Trainer's log
history and the predictions file the run wrote; and the rule that only seeds of one configuration are
averaged on one card."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..run_record import RunRecord, load_run_record
from .scrub import runnable_command, scrub

PathLike = str | os.PathLike
RunDirs = PathLike | Sequence[PathLike]


@dataclass
class RunFolder:
    """One finished run folder, read once and handed down to everything publishing does with it: its record
    (secrets and local paths scrubbed, what a card or an export may show), the record as written
    (`recorded`: local paths intact, to find files on this machine; never published), the Trainer's log
    history and the predictions file the record lists."""

    path: Path
    record: RunRecord
    state: dict[str, Any]
    predictions: dict[str, Any] | None
    recorded: RunRecord | None = None

    @property
    def stage(self) -> str:
        return self.record.stage

    @property
    def method(self) -> str | None:
        return self.record.method

    @property
    def results(self) -> dict[str, Any]:
        return self.record.results

    @property
    def reproduce_command(self) -> str:
        """The command that made this run, as a card shows it: runnable, local paths as placeholders."""
        return runnable_command((self.recorded or self.record).command)


def read_json(path: Path, default: Any = None) -> Any:
    if not path.is_file():
        return default
    return json.loads(path.read_text(encoding="utf-8"))


def load_run_folder(run_dir: PathLike) -> RunFolder:
    """Read a run folder through its record; only files the record lists as this run's are read."""
    path = Path(run_dir)
    record = load_run_record(path)
    published = RunRecord(**scrub(record.to_dict()))
    predictions_file = record.files.get("predictions")
    predictions = read_json(path / predictions_file) if predictions_file else None
    if predictions_file and predictions is None:
        raise FileNotFoundError(f"{path / predictions_file} is listed in {path}/run_info.json but missing.")
    state = read_json(path / "trainer_state.json", {})
    return RunFolder(path=path, record=published, state=state, predictions=predictions, recorded=record)


def as_run_folders(runs: RunDirs | RunFolder | Sequence[RunFolder]) -> list[RunFolder]:
    """Run folders as publishing uses them: folders already read are handed on, paths are read (once)."""
    if isinstance(runs, (str, os.PathLike, RunFolder)):
        runs = [runs]
    folders = [run if isinstance(run, RunFolder) else load_run_folder(run) for run in runs]
    if not folders:
        raise ValueError("Give at least one run folder.")
    return folders


# Keys that legitimately differ between seeds of one configuration.
PER_RUN_KEYS = {
    "seed",
    "data_seed",
    "output_dir",
    "logging_dir",
    "run_name",
    "hub_model_id",
    "push_to_hub",
    "hub_private_repo",
    "resume_from_checkpoint",
    "overwrite_output_dir",
    "report_to",
    "hyperparameters.seed",
}


def configuration(run: RunFolder) -> dict[str, Any]:
    """Everything that defines a run's configuration: recipe arguments, training hyperparameters, method."""
    record = run.record
    hyperparameters = {f"hyperparameters.{k}": v for k, v in record.hyperparameters.items()}
    return {
        **record.config,
        **hyperparameters,
        "stage": record.stage,
        "method": record.method,
        "emoreg": record.emoreg,
        "controls": record.controls,
        "label_names": record.label_names,
    }


def check_same_configuration(runs: list[RunFolder]) -> None:
    """Averaging over seeds only makes sense if nothing but the seed changed."""
    first = runs[0]
    for run in runs[1:]:
        if run.stage != first.stage or run.method != first.method:
            raise ValueError(
                f"{run.path} ({run.stage}/{run.method}) is not the configuration of {first.path}."
            )
        a, b = configuration(first), configuration(run)
        differing = sorted(k for k in set(a) | set(b) if k not in PER_RUN_KEYS and a.get(k) != b.get(k))
        if differing:
            raise ValueError(
                f"{run.path} and {first.path} differ in {', '.join(differing)}; a card averages seeds of one "
                "configuration only (give other configurations as comparisons)."
            )
