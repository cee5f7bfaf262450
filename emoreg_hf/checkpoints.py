"""Checkpoint folders, read without trusting them: whether one can be resumed (`checkpoint_problem`), and
the TrainingArguments it was saved with (`saved_training_arguments`), read from its pickled
`training_args.bin` without running any code the pickle names."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

from safetensors import SafetensorError, safe_open

# What Trainer torch.saves into every checkpoint: its TrainingArguments, pickled.
TRAINING_ARGS_FILE = "training_args.bin"


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """Why a checkpoint folder cannot be resumed (None when it can): Trainer writes `trainer_state.json`
    last, so a save cut short (a crash, a full disk) lacks it; truncated or corrupt weights are refused by
    `safetensors.safe_open`, which checks that the header's tensors cover the file exactly, and a truncated
    optimizer, scheduler or RNG state from its zip directory, which `torch.save` writes at the end of the
    file. A checkpoint without its optimizer or scheduler state (`save_only_model`) is refused too: Trainer
    would restart both silently, and train other weights than the run it continues."""
    folder = Path(folder)
    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError) as error:
        return f"trainer_state.json is missing or unreadable ({type(error).__name__})"
    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        return sharded_checkpoint_problem(folder)
    for path in weights:
        try:
            with safe_open(path, framework="numpy"):
                pass
        except OSError as error:
            return f"{path.name} is unreadable ({error.strerror or type(error).__name__})"
        except SafetensorError as error:
            return f"{path.name} is truncated or corrupt ({str(error).splitlines()[0]}, {path.stat().st_size} bytes)"
    for path in sorted([*folder.glob("*.pt"), *folder.glob("*.pth")]):
        problem = torch_file_problem(path)
        if problem:
            return problem
    missing = missing_training_state(folder)
    if missing and not _at_last_step(state):
        return (
            f"it holds no {' and no '.join(missing)}: saved with save_only_model or cut short, resuming it "
            "would restart the optimizer and the learning-rate schedule"
        )
    return None


def missing_training_state(folder: Path) -> list[str]:
    """The optimizer and scheduler states a checkpoint lacks, by Trainer's own rule for finding them
    (`optimizer.pt`, FSDP's `optimizer.bin` or sharded `optimizer_*/` folder; `scheduler.pt`). A DeepSpeed
    checkpoint keeps both in the folder its `latest` file names, which `sharded_checkpoint_problem` checks."""
    if (folder / "latest").is_file():
        return []
    optimizer = (
        (folder / "optimizer.pt").is_file()
        or (folder / "optimizer.bin").is_file()
        or any(p.is_dir() and "optimizer" in p.name for p in folder.iterdir())
    )
    missing = [] if optimizer else ["optimizer.pt"]
    return missing + ([] if (folder / "scheduler.pt").is_file() else ["scheduler.pt"])


def _at_last_step(state: dict) -> bool:
    """Saved at its run's last step: the recipes finish it from its weights alone (no optimizer step left)."""
    try:
        return 0 < int(state.get("max_steps") or 0) <= int(state.get("global_step") or 0)
    except (TypeError, ValueError, AttributeError):
        return False


def torch_file_problem(path: Path) -> str | None:
    """Why a `torch.save` file (optimizer.pt, scheduler.pt, rng_state.pth, ...) cannot be loaded: it is a zip
    archive whose directory comes last, so a file cut short has none (or one pointing past its end). A file
    in another format (torch's legacy pickles) is not judged."""
    import zipfile

    try:
        with open(path, "rb") as f:
            magic = f.read(4)
    except OSError as error:
        return f"{path.name} is unreadable ({type(error).__name__})"
    if not magic:
        return f"{path.name} is empty"
    if magic != b"PK\x03\x04":
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            size = path.stat().st_size
            if any(info.header_offset + info.compress_size > size for info in archive.infolist()):
                return f"{path.name} is truncated"
    except (OSError, zipfile.BadZipFile, ValueError) as error:
        return f"{path.name} is truncated or unreadable ({type(error).__name__})"
    return None


def sharded_checkpoint_problem(folder: Path) -> str | None:
    """A checkpoint without safetensors can still be whole: FSDP with SHARDED_STATE_DICT writes one
    torch.distributed.checkpoint folder per model (`pytorch_model_fsdp_0/`, its `.metadata` written last,
    once every rank's shard is on disk); DeepSpeed writes the folder its `latest` file names (ZeRO-3 without
    gathering the weights on save). None when such a checkpoint is complete."""
    fsdp = sorted(p for p in folder.glob("pytorch_model_fsdp_*") if p.is_dir())
    for shards in fsdp:
        if not (shards / ".metadata").is_file():
            return f"{shards.name}/ has no .metadata (a sharded save cut short)"
        if not any(f.stat().st_size > 0 for f in shards.glob("*.distcp")):
            return f"{shards.name}/ holds no shard"
    if fsdp:
        return None
    if (folder / "latest").is_file():
        tag = (folder / "latest").read_text().strip()
        if not list((folder / tag).glob("*model_states.pt")):
            return f"the DeepSpeed checkpoint {tag!r} that `latest` names holds no model states"
        return None
    return "it holds no *.safetensors weights (nor a sharded FSDP or DeepSpeed checkpoint)"


class _Inert:
    """Stands for any object a pickle names: keeps the arguments and state it was rebuilt from, and runs
    none of the code of the class it stands for."""

    args: tuple = ()
    state: Any = None

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


class _InertUnpickler(pickle.Unpickler):
    """Reads a pickle without importing or calling anything it names: every class or function it names is an
    `_Inert` stand-in, so an untrusted file runs no code (transformers' own `torch.load(weights_only=False)`
    would run whatever it names)."""

    def find_class(self, module: str, name: str):
        return type(name, (_Inert,), {"pickled_as": f"{module}.{name}"})

    def persistent_load(self, pid):  # a tensor's storage: no TrainingArguments field holds one
        return None


def _plain(value: Any) -> Any:
    """Plain values from what `_InertUnpickler` rebuilt: an object becomes the dict of its fields, an
    enum member (or a device) the value it was made from."""
    if isinstance(value, _Inert):
        state = value.state
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            return {str(k): _plain(v) for k, v in state.items()}
        return _plain(value.args[0]) if len(value.args) == 1 else f"<{value.pickled_as}>"
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def saved_training_arguments(folder: str | os.PathLike) -> dict[str, Any] | None:
    """The fields of the TrainingArguments a checkpoint was saved with (its `training_args.bin`, a
    `torch.save` zip archive holding one pickle), as plain values; None when the checkpoint has no such
    file. Raises ValueError when it cannot be read."""
    path = Path(folder) / TRAINING_ARGS_FILE
    if not path.is_file():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            fields = _plain(_InertUnpickler(io.BytesIO(archive.read(name))).load())
    except Exception as error:  # noqa: BLE001 - nothing runs: any failure is an unreadable file
        raise ValueError(f"{TRAINING_ARGS_FILE} cannot be read ({type(error).__name__})") from None
    if not isinstance(fields, dict) or "learning_rate" not in fields:
        raise ValueError(f"{TRAINING_ARGS_FILE} holds no TrainingArguments")
    return fields
