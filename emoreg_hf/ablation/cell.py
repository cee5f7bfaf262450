"""One run as a launcher sees it (`Cell`): its recipe command, its YAML and marker, whether it resumes, how its
outcome is read; and what a launcher reports back (`Outcome`). Launchers and the runner meet here."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..checkpoints import checkpoint_problem
from ..run_dir import clear_run_outputs
from ..run_folder import LAUNCHER_FILES
from ..run_record import RECORD_FILE, load_run_record
from .plan import PlannedRun

Log = Callable[[str], None]

RUN_CONFIG, MARKER, RUN_LOG = LAUNCHER_FILES  # per run: its YAML, its marker, its log (run_dir knows them)
CHECKPOINT = re.compile(r"checkpoint-\d+")  # Trainer's; `checkpoint-N.incomplete` is one set aside


def _resumable(folder: Path, fingerprint: str) -> bool:
    """A started run of this configuration with a valid checkpoint: it resumes, and nothing is removed."""
    if (_read_json(folder / MARKER) or {}).get("fingerprint") != fingerprint:
        return False
    checkpoints = [c for c in folder.glob("checkpoint-*") if c.is_dir() and CHECKPOINT.fullmatch(c.name)]
    return any(checkpoint_problem(c) is None for c in checkpoints)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Cell:
    """A planned run that is not finished yet: what a launcher starts, and how its outcome is read."""

    run: PlannedRun
    fingerprint: str
    tag: str  # "[3/6] finetune/baseline/seed0", for progress lines
    resuming: bool = False  # set by `prepare`: a valid checkpoint of this configuration is there

    @property
    def key(self) -> str:
        return self.run.key

    @property
    def config_file(self) -> Path:
        return self.run.output_dir / RUN_CONFIG

    @property
    def log_file(self) -> Path:
        return self.run.output_dir / RUN_LOG

    def recipe_args(self, recipes_dir: str | Path) -> list[str]:
        """The recipe and its arguments; the same whether the run starts fresh, resumes or is requeued."""
        script = Path(recipes_dir).resolve() / f"{self.run.stage}.py"
        return [str(script), str(self.config_file.resolve()), "--overwrite_output_dir", "false"]

    def prepare(self, log: Callable[[str], None]) -> None:
        """Write the run's YAML and marker. A run resumes from its newest valid checkpoint when its
        configuration is unchanged; otherwise what an earlier attempt wrote is removed (the launcher's files
        and anything else stay), so the recipe starts fresh with `--overwrite_output_dir false`, the one
        command that is right for a first start, a resume and a scheduler's requeue alike."""
        folder = self.run.output_dir
        folder.mkdir(parents=True, exist_ok=True)
        same = (_read_json(folder / MARKER) or {}).get("fingerprint") == self.fingerprint
        resumable = _resumable(folder, self.fingerprint)
        if not resumable:
            removed = clear_run_outputs(folder)
            if removed and not same:
                log(
                    f"{self.tag}: configuration changed since it ran; its earlier outputs are removed, starting over"
                )
            elif removed:
                log(f"{self.tag}: an unfinished earlier attempt left no checkpoint to resume; starting over")
        self.config_file.write_text(
            "# Written by emoreg_hf.ablation; rerun alone with:\n"
            f"#   python recipes/{self.run.stage}.py {self.config_file}\n"
            + yaml.safe_dump(self.run.values, sort_keys=False)
        )
        self.write_marker("ready")
        self.resuming = resumable

    def status(self) -> str | None:
        """The marker's status: ready, running, submitted, done or failed (None before the first start)."""
        return (_read_json(self.run.output_dir / MARKER) or {}).get("status")

    def write_marker(self, status: str, **extra: Any) -> None:
        payload = {"fingerprint": self.fingerprint, "key": self.key, "status": status, **extra}
        (self.run.output_dir / MARKER).write_text(json.dumps(payload, indent=2))

    def collect(self, log: Callable[[str], None], seconds: float | None = None) -> bool:
        """Whether the run finished (its record exists); marks it done and logs its headline metric."""
        if not (self.run.output_dir / RECORD_FILE).is_file():
            return False
        results = load_run_record(self.run.output_dir).results
        self.write_marker("done", **({"seconds": seconds} if seconds is not None else {}))
        metric = "test_accuracy" if "test_accuracy" in results else "eval_accuracy"
        if seconds is not None:
            took = f" in {seconds:.0f} s"
        else:  # run elsewhere (a scheduler): the training time the run recorded
            took = f", trained {results.get('train_runtime', float('nan')):.0f} s"
        log(f"{self.tag}: done{took}, {metric}={results.get(metric, float('nan')):.4f}")
        return True

    def failure(self, reason: str) -> str:
        """A failed run, named, with its log and the log's last lines."""
        return f"{self.key} {reason}; last lines of {self.log_file}:\n{log_tail(self.log_file)}"


@dataclass
class Outcome:
    """What a launcher reports back: runs finished now (with their seconds), failures (each message names
    the run and its log), and runs a scheduler still holds (when the launcher does not wait)."""

    finished: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
