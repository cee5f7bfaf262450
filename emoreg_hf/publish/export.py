"""The folder a Hub repository will hold: an allow-list of files the run wrote, scrubbed, plus the card.

Weights as safetensors only, `config.json` (with `auto_map` for EmoReg), the model code, the image
processor, the results the run record lists, the TensorBoard traces under `runs/`, the card and its plots;
never checkpoints, optimizer states, pickles, tokens or absolute local paths. `check_export` checks the finished folder before anything leaves.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..run_record import RECORD_FILE
from .card import write_model_card
from .runs import PathLike, RunDirs, RunFolder, as_run_folders
from .scrub import TOKEN_RE, local_roots, scrub

# What a Hub repo may hold: weights as safetensors, configs, remote code, results; nothing pickled.
EXPORT_FILES = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "*processor_config.json",
    "*.py",
    "all_results.json",
    "eval_results.json",
    "test_results.json",
    "train_results.json",
    "trainer_state.json",
    "run_info.json",
    "predictions_*.json",
)
# Files of the model itself (save_pretrained); everything else must be listed in the run record as this run's.
MODEL_FILES = ("*.safetensors", "*.safetensors.index.json", "config.json", "*processor_config.json", "*.py")
TRACES = "runs/*/events.out.tfevents.*"  # written by callbacks.PublishableTensorBoardCallback
FORBIDDEN_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz")
FORBIDDEN_PREFIXES = ("checkpoint-", "optimizer", "scheduler", "rng_state", "training_args")


def exported_files(run: RunFolder) -> list[Path]:
    """The files of a run folder that go into its export: model files plus the record's own files."""
    source = run.path
    own = set(run.record.files.values()) | {RECORD_FILE}
    return [
        path
        for path in sorted(source.iterdir())
        if path.is_file()
        and any(path.match(p) for p in EXPORT_FILES)
        and (any(path.match(p) for p in MODEL_FILES) or path.name in own)
    ]


def published_traces(run_dir: PathLike) -> list[tuple[Path, str]]:
    """The run's TensorBoard traces and the names they are published under. A writer names its file
    `events.out.tfevents.<time>.<host name>[.<pid>...]`; the published name keeps the time (TensorBoard
    orders files by name) and drops the rest, so no host name leaves the machine."""
    source = Path(run_dir)
    out = []
    for folder in sorted({trace.parent for trace in source.glob(TRACES)}):
        for index, trace in enumerate(sorted(folder.glob("events.out.tfevents.*"))):
            stamp = trace.name.removeprefix("events.out.tfevents.").split(".")[0]
            name = f"events.out.tfevents.{stamp if stamp.isdigit() else 0}.emoreg-hf.{index}"
            out.append((trace, (trace.parent / name).relative_to(source).as_posix()))
    return out


def check_folder_target(folder: PathLike, option: str) -> None:
    """A folder to write into is a folder, or can become one: a file there (or above it) is refused with a
    message, before anything is written, instead of a `NotADirectoryError` half-way."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "is a file" if existing == folder else f"lies inside {existing}, which is a file"
        raise ValueError(f"{option} {folder} {where}, not a folder; give a folder. Nothing was written.")


def export_for_hub(
    run_dirs: RunDirs | Sequence[RunFolder],
    export_dir: PathLike,
    *,
    repo_id: str | None = None,
    compare_dirs: Sequence[PathLike | RunFolder] = (),
    space_id: str | None = None,
    license: str | None = None,
) -> Path:
    """Build the folder a Hub repo will hold: safetensors, configs, code, results, card and plots.

    The first run folder gives the weights and plots; all of them give results. JSON files are scrubbed of
    secrets and absolute local paths, and the folder is checked before it is returned. Each folder is read
    once (or handed over already read) and passed on to the card and the plots.
    """
    runs = as_run_folders(run_dirs)
    source, export_dir = runs[0].path, Path(export_dir)
    check_folder_target(export_dir, "export folder")
    if export_dir.exists() and any(export_dir.iterdir()):
        raise FileExistsError(f"Export folder {export_dir} is not empty.")
    if not list(source.glob("*.safetensors")):
        found = (
            ", ".join(sorted(p.name for p in source.iterdir() if p.suffix in FORBIDDEN_SUFFIXES)) or "nothing"
        )
        raise FileNotFoundError(
            f"{source} has no *.safetensors weights (found {found}); save with safe_serialization=True."
        )
    files = exported_files(runs[0])
    export_dir.mkdir(parents=True, exist_ok=True)
    for trace, published in published_traces(source):  # TensorBoard traces: scalars, ρ histograms
        (export_dir / published).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(trace, export_dir / published)
    for path in files:
        if path.name == RECORD_FILE:  # the record as read once, already scrubbed
            data = runs[0].record.to_dict()
            (export_dir / path.name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        elif path.suffix == ".json":
            data = scrub(json.loads(path.read_text(encoding="utf-8")))
            (export_dir / path.name).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        else:
            shutil.copy2(path, export_dir / path.name)
    write_model_card(
        runs, export_dir, repo_id=repo_id, compare_dirs=compare_dirs, space_id=space_id, license=license
    )
    problems = check_export(export_dir, local_paths=[run.path.resolve() for run in runs])
    if problems:
        raise ValueError("Refusing to publish this folder:\n  " + "\n  ".join(problems))
    return export_dir


def check_export(folder: PathLike, local_paths: Sequence[PathLike] = ()) -> list[str]:
    """Problems that must not reach the Hub: pickles, checkpoints, tokens, absolute local paths."""
    folder = Path(folder)
    prefixes = {
        str(p) for p in (*local_paths, folder.resolve(), Path.home(), *local_roots()) if len(str(p)) > 1
    }
    host = socket.gethostname()
    problems = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if host and f".{host}." in f".{path.name}.":  # as TensorBoard writers name their files
            problems.append(f"{rel}: the file name carries this machine's host name ({host})")
        if any(part.startswith(FORBIDDEN_PREFIXES) for part in path.relative_to(folder).parts):
            problems.append(f"{rel}: checkpoint/optimizer/training-state files are not published")
        elif path.is_file() and path.suffix in FORBIDDEN_SUFFIXES:
            problems.append(f"{rel}: only safetensors weights are published, no pickles")
        if path.is_file() and path.match(TRACES):  # binary, but Trainer's own traces carry paths as text
            data = path.read_bytes()
            leaked = sorted(p for p in prefixes if p.encode() in data)
            if leaked or TOKEN_RE.search(data.decode("latin-1")):
                problems.append(
                    f"{rel}: a TensorBoard trace that holds local paths or a token ({', '.join(leaked)})"
                )
            continue
        if not path.is_file() or path.suffix not in (".json", ".md", ".py", ".txt", ".yaml", ".yml"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if TOKEN_RE.search(text):
            problems.append(f"{rel}: contains something that looks like a Hugging Face token")
        leaked = sorted(p for p in prefixes if p in text)
        if path.suffix == ".json":
            leaked += [s for s in _strings(json.loads(text)) if os.path.isabs(s)][:3]
        if leaked:
            problems.append(f"{rel}: contains absolute local paths ({', '.join(leaked)})")
    return problems


def _strings(obj: Any):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj
