"""The run record: one typed description of a finished run, written into its folder as `run_info.json`.

The run folder is the only interface between training and everything after it (model cards, export, push,
ablation tables). `finish` describes the run and `finish.finish_run` writes the `RunRecord`, and
publishing and the ablation report read it back with `load_run_record`, which names the file and the field
when something is missing or comes from a newer schema. The fields are documented in docs/run-record.md.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
RECORD_FILE = "run_info.json"
STAGES = ("pretrain", "finetune")

# Recorded commands never carry a token: `--hub_token hf_...`, `--hub_token=...` or a bare `hf_...`.
_TOKEN_ARG_RE = re.compile(r"(--(?:hub_token|token|hf_token)[ =])(\S+)")
_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")


class RunRecordError(ValueError):
    """A run folder whose record is missing, unreadable, incomplete or from a newer schema."""


@dataclass
class DatasetRecord:
    """One data set a run read: `id` as given (Hub id, local path, `demo:<name>`), a readable `name`, and
    the number of rows used per split after caps and filtering; `rows_dropped`: per split, the rows the
    load left out by the data set's own choice (`drop_unseen_classes`, `drop_unlabeled`, ...), by reason."""

    id: str
    name: str
    split_sizes: dict[str, int] = field(default_factory=dict)
    rows_dropped: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass
class RunRecord:
    """What a finished run was and what it produced (see docs/run-record.md)."""

    stage: str  # pretrain | finetune
    seed: int
    command: str  # how the run was started, tokens redacted
    label_names: list[str]  # the classes the model predicts, in id order
    datasets: list[DatasetRecord]
    synthetic_data: bool  # every image came from the embedded demo generator (`demo:` sources)
    hyperparameters: dict[str, Any]  # the training summary: lr, epochs, batch sizes, world size, ...
    config: dict[str, Any]  # the recipe arguments (script dataclass) as parsed
    results: dict[str, Any]  # what all_results.json holds
    method: str | None = None  # finetune: emoreg | baseline | transfer
    models: dict[str, Any] = field(
        default_factory=dict
    )  # pathway -> checkpoint id/path or from-scratch config
    base_models: list[str] = field(default_factory=list)  # checkpoints the weights start from
    taxonomy: dict[str, Any] | None = (
        None  # {"name", "names"}: the emotion space (stage 1, or the affective pathway)
    )
    emoreg: dict[str, Any] | None = None  # EmoReg options (regulation, influence, rho_init, ...)
    controls: dict[str, bool] = field(
        default_factory=dict
    )  # shuffle_labels / shuffled_emotion / no_pretraining
    data_report: dict[str, Any] | None = None  # stage 1: per-source, per-class counts and label mappings
    class_balance: dict[str, Any] | None = (
        None  # class_weighting, sampler, train_counts, loss_weights (emoreg_hf.balance); None: neither used
    )
    files: dict[str, str] = field(default_factory=dict)  # role -> file this run wrote (e.g. predictions)
    # every TrainingArguments value that changes training, as the run was started (run_settings.training_arguments)
    training_arguments: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)  # every file and folder this run wrote into its folder
    config_file: str | None = None
    emoreg_hf_version: str | None = None
    framework_versions: dict[str, str] | None = (
        None  # package -> version installed for the run (the card lists them)
    )
    started: str | None = None  # UTC ISO 8601 ("...Z"): the first training step's start, kept across resumes
    finished: str | None = None  # UTC ISO 8601: when the record was written
    resumed_from_step: int | None = (
        None  # the checkpoint's step a resumed run went on from; None: not resumed
    )
    machine: dict[str, Any] | None = (
        None  # cpu_model, cpu_capability, cpu_count, torch_threads, gpu, ... (no host)
    )
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self):
        if self.stage not in STAGES:
            raise RunRecordError(f"stage must be one of {STAGES}, got {self.stage!r}")
        self.command = redact_command(self.command)
        known = {f.name for f in dataclasses.fields(DatasetRecord)}  # a later minor version's keys: ignored
        self.datasets = [
            d if isinstance(d, DatasetRecord) else DatasetRecord(**{k: v for k, v in d.items() if k in known})
            for d in self.datasets
        ]

    @property
    def evaluated_split(self) -> str:
        """`test` when the run has test results, else `eval` (the validation split)."""
        return "test" if "test_accuracy" in self.results else "eval"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, run_dir: str | os.PathLike) -> Path:
        path = Path(run_dir) / RECORD_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
        return path


FRAMEWORKS = (
    "torch",
    "transformers",
    "datasets",
    "accelerate",
    "timm",
    "huggingface_hub",
    "evaluate",
    "numpy",
)


def framework_versions() -> dict[str, str]:
    """Python and the installed versions of the frameworks a run depends on (those not installed left out)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in FRAMEWORKS:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    """Now as UTC ISO 8601 to the second (`2026-12-07T21:59:59Z`): comparable across machines and zones."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cpu_model() -> str | None:
    """The CPU's marketing name: /proc/cpuinfo's "model name" on Linux, `platform.processor()` elsewhere."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info(world_size: int | None = None) -> dict[str, Any]:
    """What a run's numbers may depend on besides its settings: the CPU, the instruction set torch's kernels
    use, threads, the GPU and the processes. Never the host name, the user or a path (exports refuse them)."""
    import platform

    import torch

    return {
        "cpu_model": _cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "world_size": world_size,
        "platform": platform.platform(),
    }


def redact_command(command: str) -> str:
    """A command line with any token replaced by `<redacted>`."""
    return _TOKEN_RE.sub("<redacted>", _TOKEN_ARG_RE.sub(r"\1<redacted>", command))


def _required_fields() -> list[str]:
    return [
        f.name
        for f in dataclasses.fields(RunRecord)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]


def _expected_type(hint) -> type:
    """`list[str] | None` -> list: the container or scalar type a JSON value of the field must have."""
    members = (
        [a for a in typing.get_args(hint) if a is not type(None)]
        if typing.get_origin(hint)
        in (
            typing.Union,
            types.UnionType,
        )
        else [hint]
    )
    member = members[0]
    return typing.get_origin(member) or member


def _check_types(data: dict[str, Any], where: Path) -> None:
    hints = typing.get_type_hints(RunRecord)
    for name, value in data.items():
        expected = _expected_type(hints[name])
        if value is None or expected is Any:
            continue
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise RunRecordError(
                f"{where}: field {name!r} should be {expected.__name__}, got {type(value).__name__} ({value!r:.80})"
            )


def load_run_record(run_dir: str | os.PathLike) -> RunRecord:
    """Read `<run_dir>/run_info.json`; every problem names the file and, where it applies, the field."""
    folder = Path(run_dir)
    path = folder / RECORD_FILE
    if not folder.is_dir():
        raise FileNotFoundError(f"Run folder {str(folder)!r} does not exist.")
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: is {str(folder)!r} the --output_dir of a finished recipes/pretrain.py or "
            "recipes/finetune.py run?"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise RunRecordError(f"{path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise RunRecordError(f"{path} must hold a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version is None:
        raise RunRecordError(
            f"{path} has no field 'schema_version': it was written by an emoreg-hf older than the run record "
            "(0.2); rerun the recipe to write a current record."
        )
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise RunRecordError(
            f"{path}: field 'schema_version' is {version!r}, newer than this emoreg-hf reads ({SCHEMA_VERSION}); "
            "upgrade emoreg-hf to read it."
        )
    missing = [name for name in _required_fields() if name not in data]
    if missing:
        raise RunRecordError(f"{path} lacks required field(s) {', '.join(map(repr, missing))}")
    known = {f.name for f in dataclasses.fields(RunRecord)}
    data = {k: v for k, v in data.items() if k in known}  # fields added by a later minor version are ignored
    _check_types(data, path)
    try:
        return RunRecord(**data)
    except (TypeError, RunRecordError) as err:
        raise RunRecordError(f"{path}: {err}") from err


__all__ = [
    "RECORD_FILE",
    "SCHEMA_VERSION",
    "DatasetRecord",
    "RunRecord",
    "RunRecordError",
    "load_run_record",
    "machine_info",
    "redact_command",
    "utc_now",
]
