"""Checkpoints, read without trusting them, and every resume decision: whether a checkpoint folder can be
resumed (`checkpoint_problem`), which checkpoint a run resumes from (`resume_checkpoint`: its folder's newest
valid one, a folder given, or the Hub's `last-checkpoint`), and what resuming one carries over (the
whole-run loss, a checkpoint saved at its run's last step finished from its weights alone)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open
from transformers.trainer_utils import get_last_checkpoint

from .run_folder import STARTED_FILE, RunDirError, _names, check_overwritable, holds_a_run, started_run
from .run_record import RECORD_FILE
from .run_settings import legacy_checkpoint_differences

if TYPE_CHECKING:
    import torch
    from transformers import Trainer

logger = logging.getLogger(__name__)

# EmoRegRunLoss's key in trainer_state.json's stateful_callbacks (`trainer.RUN_LOSS`, its class name).
RUN_LOSS = "EmoRegRunLoss"


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


# -- which checkpoint a run resumes from ------------------------------------------------------------------


HUB_CHECKPOINT_DIR = (
    "last-checkpoint"  # where `--resume_from_checkpoint org/name` downloads to, in output_dir
)


def _is_hub_id(value: str) -> bool:
    parts = value.split("/")
    return len(parts) == 2 and all(parts) and not value.startswith((".", "~")) and not os.path.exists(value)


def resume_checkpoint(
    output_dir: str, *, resume_from_checkpoint: str | None, overwrite: bool, hub_api=None, training_args=None
) -> str | None:
    """The checkpoint to resume from, or None for a fresh run.

    An explicit `resume_from_checkpoint` wins: a checkpoint folder, or a Hub model id whose branch
    `last-checkpoint` a run with `hub_strategy: checkpoint` pushed (downloaded into
    `output_dir/last-checkpoint` first, with `hub_api` or the logged-in token); otherwise the newest valid
    `checkpoint-*` in `output_dir` (an incomplete or corrupt one is renamed `*.incomplete`, with a warning, so
    it is never mistaken for a valid one again). A run that started here and stopped before its first
    checkpoint starts again. A folder holding anything else without a checkpoint is refused (it may hold a
    finished model, or your files); with `overwrite`, only a folder that records a run (or is empty) is
    accepted, since overwriting removes only what a run recorded. In a folder with checkpoints but no
    record of a run, nothing is renamed: its newest checkpoint resumes only when it is complete and the
    settings it was saved with (its own `training_args.bin`) are those of `training_args`.
    """
    explicit = resume_from_checkpoint and str(resume_from_checkpoint).lower() != "true"
    from_hub = explicit and not os.path.isdir(resume_from_checkpoint) and _is_hub_id(resume_from_checkpoint)
    if (
        explicit
        and overwrite
        and (from_hub or Path(resume_from_checkpoint).resolve().is_relative_to(Path(output_dir).resolve()))
    ):
        raise RunDirError(
            f"resume_from_checkpoint={resume_from_checkpoint!r} is (or would be downloaded) in output_dir "
            f"{output_dir!r}, which --overwrite_output_dir true clears first: resume without overwriting, or "
            "start over without --resume_from_checkpoint"
        )
    if from_hub:
        from .publish.push import download_checkpoint

        check_resumable_into(output_dir, resume_from_checkpoint)
        local = os.path.join(output_dir, HUB_CHECKPOINT_DIR)
        logger.info("Downloading the last checkpoint of %s into %s", resume_from_checkpoint, local)
        download_checkpoint(resume_from_checkpoint, local, api=hub_api)
        problem = checkpoint_problem(local)
        if problem:
            raise RunDirError(
                f"resume_from_checkpoint={resume_from_checkpoint!r}: the checkpoint downloaded into {local} "
                f"cannot be resumed: {problem}"
            )
        return local
    if explicit:
        if not os.path.isdir(resume_from_checkpoint):
            raise RunDirError(f"resume_from_checkpoint={resume_from_checkpoint!r} is not a checkpoint folder")
        problem = checkpoint_problem(resume_from_checkpoint)
        if problem:
            raise RunDirError(
                f"resume_from_checkpoint={resume_from_checkpoint!r} cannot be resumed: {problem}"
            )
    if not os.path.isdir(output_dir):
        return resume_from_checkpoint if explicit else None
    if overwrite:
        check_overwritable(output_dir)
        return resume_from_checkpoint if explicit else None
    if explicit:
        check_resumable_into(output_dir, resume_from_checkpoint)
        return resume_from_checkpoint
    ours = holds_a_run(output_dir)
    while (last := get_last_checkpoint(output_dir)) is not None:
        problem = checkpoint_problem(last)
        if problem is None and not ours:
            check_legacy_checkpoint(output_dir, last, training_args)
        if problem is None:
            logger.info("Resuming from %s", last)
            return last
        if not ours:
            raise RunDirError(
                f"output_dir {output_dir!r}: {os.path.basename(last)} cannot be resumed ({problem}), and the "
                f"folder holds no record of a run ({STARTED_FILE} or {RECORD_FILE}), so nothing in it is "
                "renamed or removed; nothing was loaded or trained. Choose another --output_dir, or pass "
                "--resume_from_checkpoint with a complete checkpoint."
            )
        os.replace(last, last + ".incomplete")
        logger.warning(
            "%s cannot be resumed (%s): renamed %s.incomplete", last, problem, os.path.basename(last)
        )
    if started_run(output_dir) is not None:
        logger.info("%s holds a run that stopped before its first checkpoint: starting it again", output_dir)
        return None
    if [name for name in _names(output_dir) if not name.endswith(".incomplete")]:
        raise RunDirError(
            f"output_dir {output_dir!r} is not empty and holds no checkpoint to resume from; "
            "pass --overwrite_output_dir true to replace the run it holds, or choose another output_dir"
        )
    return None


def check_resumable_into(output_dir: str, checkpoint: str) -> None:
    """`--resume_from_checkpoint` writes the run's model, card and results into `output_dir`, over any file of
    the same name: the folder must be new or empty, record a run of these recipes, or hold only checkpoints."""
    if holds_a_run(output_dir):
        return
    yours = [n for n in _names(output_dir) if not n.startswith("checkpoint-") and n != HUB_CHECKPOINT_DIR]
    if yours:
        shown = ", ".join(yours[:8]) + (", ..." if len(yours) > 8 else "")
        raise RunDirError(
            f"output_dir {output_dir!r} holds files ({shown}) but no record of a run: resuming "
            f"{checkpoint} there would write this run's model, card and results over them, so nothing was "
            "loaded or trained. Choose a new or empty --output_dir."
        )


def check_legacy_checkpoint(output_dir: str, checkpoint: str, training_args) -> None:
    """A checkpoint in a folder with no record of its run (an emoreg-hf older than `run_started.json`, or
    another Trainer's) resumes only when the settings it was saved with are this command's; otherwise, or
    when they cannot be known, it is refused, and nothing in the folder is touched."""
    name = os.path.basename(checkpoint)
    try:
        differing = legacy_checkpoint_differences(checkpoint, training_args)
    except ValueError as error:
        raise RunDirError(
            f"output_dir {output_dir!r} holds {name} but no record of the run it belongs to ({STARTED_FILE} or "
            f"{RECORD_FILE}), and the settings it was saved with cannot be known ({error}); resuming it could "
            "mix two runs, so nothing was loaded or trained. Choose another --output_dir, or pass "
            f"--resume_from_checkpoint {checkpoint} to resume it with this command's settings."
        ) from None
    if differing:
        raise RunDirError(
            f"output_dir {output_dir!r} holds {name}, saved with other settings and with no record of its run "
            f"({STARTED_FILE} or {RECORD_FILE}); resuming it with these would mix two runs, so nothing was "
            "loaded or trained:\n" + "\n".join(differing) + "\nRun the command it was started with to resume "
            "it, or choose another --output_dir."
        )
    logger.warning(
        "%s has no record of its run (no %s: an older emoreg-hf): the TrainingArguments it was saved with "
        "are this command's, so it is resumed; the recipe's own arguments (data, method, models) are not "
        "stored in a checkpoint and are taken from this command",
        checkpoint,
        STARTED_FILE,
    )


# -- resuming: the whole-run loss, a checkpoint at its run's last step -----------------------------------


def _checkpoint_step(checkpoint: str) -> int:
    import json

    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        return int(json.load(f).get("global_step", 0))


def _run_loss_at(checkpoint: str | None) -> dict | None:
    """The whole-run loss sum a checkpoint of EmoRegTrainer carries (None for other checkpoints)."""
    import json

    if checkpoint is None:
        return None
    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        state = json.load(f)
    stash = (state.get("stateful_callbacks") or {}).get(RUN_LOSS)
    stash = (stash or {}).get("attributes", stash)  # ExportableState's layout (earlier versions: flat)
    return stash if stash and stash.get("global_step") == state.get("global_step") else None


def _is_last_step(checkpoint: str) -> bool:
    """Whether a checkpoint was saved at its run's last optimizer step (Trainer saves one there): the run
    was stopped while saving or evaluating the finished model, and nothing is left to train."""
    with open(os.path.join(checkpoint, "trainer_state.json")) as f:
        return _at_last_step(json.load(f))


def finish_from_last_checkpoint(trainer: Trainer, checkpoint: str, stash: dict | None) -> dict:
    """The trained model and state from a checkpoint at the run's last step, without a training step.

    Resuming there with `Trainer.train` would train one step past the end when the last epoch is partial
    (the resumed epoch runs a step before it checks `max_steps`)."""
    from transformers import TrainerState

    state = TrainerState.load_from_json(os.path.join(checkpoint, "trainer_state.json"))
    load_checkpoint_weights(trainer.model, checkpoint)
    trainer.state = state
    logger.warning(
        "%s was saved at the run's last step (%d of %d): finishing it (save, evaluate, record) without training",
        checkpoint,
        state.global_step,
        state.max_steps,
    )
    metrics = {"epoch": state.epoch, "total_flos": state.total_flos}
    if stash:
        metrics["train_loss"] = stash["loss_sum"] / max(1, state.global_step)
    return metrics


def load_checkpoint_weights(model: torch.nn.Module, checkpoint: str) -> None:
    """A Trainer checkpoint's safetensors weights (one file or shards) into `model`; every key must match."""
    from safetensors.torch import load_file

    from .ema import EMA_FILE  # the weight EMA's own file, not the model's

    state_dict = {}
    for path in sorted(p for p in os.listdir(checkpoint) if p.endswith(".safetensors") and p != EMA_FILE):
        state_dict.update(load_file(os.path.join(checkpoint, path)))
    missing, unexpected = model.load_state_dict(state_dict, strict=False)
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    if unexpected or set(missing) - tied:
        raise RuntimeError(
            f"{checkpoint} does not hold this model's weights (missing {sorted(set(missing) - tied)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]})"
        )
