"""Run folders as publishing reads them: the run record (scrubbed for publication), the Trainer's log
history and the predictions file the run wrote; and the rule that only seeds of one configuration are
averaged on one card."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..run_record import RunRecord, load_run_record
from .scrub import PLACEHOLDER, PROJECT, is_hub_id, local_roots, runnable_command, scrub

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
    command = published_cell_command(path)
    if command:  # a study's records: its card reruns the published cell config, not the runner's scratch YAML
        record, published = (dataclasses.replace(r, command=command) for r in (record, published))
    return RunFolder(path=path, record=published, state=state, predictions=predictions, recorded=record)


def published_cell_command(path: Path) -> str | None:
    """For a run's records in a published study (`<study>/records/<stage>/<name>/seedN`), the command that reruns
    its cell config `<study>/runs/<stage>/<name>/seedN.yaml` (benchmarks/publish_study.py), if the study has it."""
    parts = path.resolve().parts
    if len(parts) < 5 or parts[-4] != "records":
        return None
    stage, name, seed = parts[-3:]
    cell = Path(*parts[:-4]) / "runs" / stage / name / f"{seed}.yaml"
    if not cell.is_file():
        return None
    shown = cell.relative_to(PROJECT).as_posix() if cell.is_relative_to(PROJECT) else str(cell)
    return f"python recipes/{stage}.py {shown}"


def in_same_tree(run_path: PathLike, recorded: str | None) -> Path | None:
    """Where a run folder recorded as `.../<stage>/<name>/<seed>` (`/path/to/<study>/pretrain/normal/seed0`, or
    relative to the project for a study inside it, as a study's records keep a stage-2 run's affective
    checkpoint) lies next to `run_path` (`.../finetune/<name>/seedN`) in the same tree:
    `.../pretrain/normal/seed0`, whether that tree is the study's run folders or its `records/`."""
    if not recorded:
        return None
    tail = Path(recorded.removeprefix(PLACEHOLDER)).parts[-3:]
    parents = Path(run_path).resolve().parents
    if len(tail) < 3 or len(parents) < 3:
        return None
    return parents[2].joinpath(*tail)


def stage1_run(run: RunFolder) -> RunFolder | None:
    """The run folder of a local affective checkpoint (for its provenance and reproduce command), if found;
    in a study's records (the path a placeholder) the stage-1 record at the same place in the records."""
    raw = (run.recorded or run.record).models  # unscrubbed: the local path as recorded
    path = raw.get("affect_path")
    if not path or is_hub_id(raw.get("affect")):
        return None
    # As recorded (an absolute path of this machine), else where it lies in this run's own tree (a records/
    # copy names it by a placeholder or relative to the project), else relative to the checkout.
    exact = [Path(path)] if Path(path).is_absolute() and not path.startswith(PLACEHOLDER) else []
    candidates = [*exact, *filter(None, [in_same_tree(run.path, path)])]
    candidates += [root / raw.get("affect", "") for root in local_roots()]
    for candidate in candidates:
        if (candidate / "run_info.json").is_file() and (candidate / "all_results.json").is_file():
            return load_run_folder(candidate)
    return None


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


AFFECT_KEY = "affect_model_name_or_path"


def _same_stage1(a: RunFolder, b: RunFolder) -> bool:
    """Two runs read stage-1 checkpoints of one configuration (seeds of it, as an ablation study trains one
    per seed): both are local run folders found (`stage1_run`) whose configurations differ only by seed."""
    first, second = stage1_run(a), stage1_run(b)
    if first is None or second is None:
        return False
    try:
        check_same_configuration([first, second])
    except ValueError:
        return False
    return True


def configuration_differences(first: RunFolder, run: RunFolder) -> list[str]:
    """The keys in which two runs' configurations differ (the seed and where a run went do not count)."""
    if run.stage != first.stage or run.method != first.method:
        return ["stage/method"]
    a, b = configuration(first), configuration(run)
    differing = sorted(k for k in set(a) | set(b) if k not in PER_RUN_KEYS and a.get(k) != b.get(k))
    if AFFECT_KEY in differing and _same_stage1(first, run):
        differing.remove(AFFECT_KEY)
    return differing


def check_same_configuration(runs: list[RunFolder]) -> None:
    """Averaging over seeds only makes sense if nothing but the seed changed."""
    first = runs[0]
    for run in runs[1:]:
        if run.stage != first.stage or run.method != first.method:
            raise ValueError(
                f"{run.path} ({run.stage}/{run.method}) is not the configuration of {first.path}."
            )
        differing = configuration_differences(first, run)
        if differing:
            raise ValueError(
                f"{run.path} and {first.path} differ in {', '.join(differing)}; a card averages seeds of one "
                "configuration only (give other configurations as comparisons)."
            )


def check_card_runs(runs: list[RunFolder], compare: Sequence[RunFolder] = ()) -> None:
    """What a card may be made of, checked before anything is written: distinct runs, one per seed, of one
    configuration (a folder given twice, or a copy of one, would be averaged as two seeds: "± 0.00"), and
    controls that are other configurations (a run compared with itself, or with a seed of its own
    configuration, gives a "Δ +0.0000" control row). Raises `ValueError` naming the folders."""
    seen: dict[Path, RunFolder] = {}
    by_seed: dict[Any, RunFolder] = {}
    for run in runs:
        earlier = seen.setdefault(run.path.resolve(), run)
        if earlier is not run:
            also = f" (also as {earlier.path})" if str(earlier.path) != str(run.path) else ""
            raise ValueError(
                f"{run.path} is given twice{also}: a card averages distinct runs, one per seed; give each run "
                "folder once."
            )
        twin = by_seed.setdefault(run.record.seed, run)
        if twin is not run:
            raise ValueError(
                f"{twin.path} and {run.path} are both seed {run.record.seed} (one run and a copy of it?): "
                "a card's mean ± std is over seeds, so give each seed's run once."
            )
    check_same_configuration(runs)
    for other in compare:
        if other.path.resolve() in seen:
            raise ValueError(
                f"--compare {other.path} is {seen[other.path.resolve()].path}, a run this card publishes: a "
                "run compared with itself says nothing; compare with other configurations (baseline, controls)."
            )
        if not configuration_differences(runs[0], other):
            raise ValueError(
                f"--compare {other.path} (seed {other.record.seed}) is a run of this card's own configuration "
                f"({runs[0].path}): a control row needs another configuration (baseline, controls); give "
                "another seed of this one as a run folder (before --compare) to average it."
            )
