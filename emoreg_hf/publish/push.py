"""Upload an export to the Hub with `create_repo` + `upload_folder`, or write it for review and stop; and the
recipes' `--push_to_hub` (checked before training, checkpoints pushed while it trains, a Hub checkpoint
downloaded to resume). Failures are `HubPushError`s with a message (`hub.py`); the recipes print them.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .card import CARD_NAME
from .export import MODEL_FILES, check_folder_target, export_for_hub
from .hub import (
    REPO_ID_RE,
    CardExistsError,
    HubPushError,
    _check_token,
    _hf_api,
    _transport_errors,
    hub_errors,
)
from .licenses import check_license
from .runs import PathLike, RunDirs, RunFolder, as_run_folders, check_card_runs
from .space import export_space

logger = logging.getLogger(__name__)


def push_to_hub(
    run_dirs: RunDirs,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    overwrite: bool = False,
    dry_run: bool = False,
    compare_dirs: Sequence[PathLike] = (),
    commit_message: str | None = None,
    token: str | None = None,
    api: Any = None,
    export_dir: PathLike | None = None,
    space_id: str | None = None,
    space_examples: Sequence[PathLike] = (),
    license: str | None = None,
) -> str | None:
    """Export the run folders and upload them to `repo_id` with `create_repo` + `upload_folder`; with
    `space_id`, also a Gradio Space that demos the model (and the model card links it). `license` is the card's licence
    (default: the training data's when known, else `other`; `card.card_license`).

    An existing README.md at the target revision is kept unless `overwrite` (a PR never overwrites, so
    `create_pr` proposes the new card instead). `dry_run` prints the file lists and the card and touches no
    network; `export_dir` writes exactly the folder that would be uploaded there (with a Space: `model/`
    and `space/` inside it), lists it and stops. Returns the commit (or PR) URL of the model, None on a dry
    run or an export.
    """
    for name, value, flag in (
        ("model", repo_id, "--repo_id (recipes: --hub_model_id)"),
        ("Space", space_id, "--space_id"),
    ):
        if (name == "model" or value is not None) and (
            not isinstance(value, str) or not REPO_ID_RE.match(value)
        ):
            raise ValueError(f"{value!r} is not a Hub {name} repository id: give {flag} as org/name.")
    check_license(license)
    if export_dir is not None:
        check_folder_target(export_dir, "--export_dir")
    runs = as_run_folders(run_dirs)  # each folder read once, then handed to the export, card, plots, Space
    compare = as_run_folders(compare_dirs) if compare_dirs else []
    check_card_runs(runs, compare)  # a folder twice, a copy, a run compared with itself: nothing is written
    if space_id:
        from ..space.folder import check_example_images

        check_example_images(space_examples)  # a missing or unreadable example: nothing is written
    with tempfile.TemporaryDirectory(prefix="emoreg-export-") as tmp:
        root = Path(export_dir) if export_dir is not None else Path(tmp)
        if export_dir is not None and root.exists() and any(root.iterdir()):
            raise FileExistsError(f"Export folder {root} is not empty.")
        model_dir = root / "model" if space_id or export_dir is None else root
        with _removed_if_incomplete(root if export_dir is not None else None):
            folders = {
                repo_id: export_for_hub(
                    runs, model_dir, repo_id=repo_id, compare_dirs=compare, space_id=space_id, license=license
                )
            }
            if space_id:
                folders[space_id] = export_space(
                    runs[0], root / "space", space_id=space_id, model_repo_id=repo_id, examples=space_examples
                )
        if export_dir is not None or dry_run:
            for target, folder in folders.items():
                kind = "Space" if target == space_id else "model"
                if dry_run:
                    url = f"https://huggingface.co/{'spaces/' if kind == 'Space' else ''}{target}"
                    where = f"@{revision or 'main'}" + (" as a pull request" if create_pr else "")
                    print(
                        f"[dry run] would upload {len(_files(folder))} files to {url} ({kind} {target}{where}):"
                    )
                else:
                    print(
                        f"Wrote the {len(_files(folder))} files that would be uploaded to {kind} {target} into {folder}:"
                    )
                for name in _files(folder):
                    print(f"  {name}  ({(folder / name).stat().st_size:,} bytes)")
            if dry_run:
                print(f"\n[dry run] {CARD_NAME}:\n")
                print((folders[repo_id] / CARD_NAME).read_text(encoding="utf-8"))
            else:
                print(
                    "Nothing was uploaded; review the folder, then rerun without --export_dir to publish it."
                )
            return None
        api = api if api is not None else _hf_api(token)
        url = _upload(
            folders[repo_id], repo_id, "model", private, revision, create_pr, overwrite, commit_message, api
        )
        if space_id:
            _upload(folders[space_id], space_id, "space", private, None, False, overwrite, None, api)
        return url


@contextlib.contextmanager
def _removed_if_incomplete(folder: Path | None):
    """An export that fails half-way removes what it wrote into `folder` (new or empty before), so the same
    command can simply be run again."""
    existed = folder is not None and folder.exists()
    try:
        yield
    except BaseException:
        if folder is not None and folder.is_dir():
            for path in folder.iterdir():
                shutil.rmtree(path) if path.is_dir() else path.unlink()
            if not existed:
                folder.rmdir()
        raise


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _upload(folder, repo_id, repo_type, private, revision, create_pr, overwrite, commit_message, api) -> str:
    _check_token(api)
    files = _files(Path(folder))
    with hub_errors(repo_id):
        extra = {"space_sdk": "gradio"} if repo_type == "space" else {}
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type=repo_type, **extra)
        if revision and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True, repo_type=repo_type)
        if (
            not overwrite
            and not create_pr
            and api.file_exists(repo_id, CARD_NAME, revision=revision, repo_type=repo_type)
        ):
            raise CardExistsError(
                f"{repo_id}@{revision or 'main'} already has a {CARD_NAME}; nothing was pushed there. Pass "
                "--overwrite to replace it, or --create_pr to propose the new card as a pull request."
            )
        what = "Space app, requirements, examples" if repo_type == "space" else "model card, weights, results"
        info = api.upload_folder(
            repo_id=repo_id,
            folder_path=str(folder),
            repo_type=repo_type,
            revision=revision,
            create_pr=create_pr,
            commit_message=commit_message or f"Upload {len(files)} files with emoreg-hf ({what})",
        )
    return str(getattr(info, "pr_url", None) or getattr(info, "commit_url", None) or info)


# -- the recipes' --push_to_hub ---------------------------------------------------------------------------


@dataclass
class HubTarget:
    """Where a recipe publishes, checked before training: the repo exists and the token may write to it."""

    repo_id: str
    api: Any
    private: bool = False
    revision: str | None = None


def start_push(training_args, api: Any = None, token: str | None = None) -> HubTarget:
    """`--push_to_hub true`: check the token, create the repository (and branch) and make sure no card of
    someone else's would be replaced, before any training: a missing token, an unreachable Hub or an
    existing card stops the run at once. Raises `HubPushError` / `ValueError`."""
    repo_id = training_args.hub_model_id
    if not isinstance(repo_id, str) or not REPO_ID_RE.match(repo_id):
        raise ValueError(f"{repo_id!r} is not a Hub model repository id: give --hub_model_id as org/name.")
    api = api if api is not None else _hf_api(token or getattr(training_args, "hub_token", None))
    target = HubTarget(
        repo_id,
        api,
        private=bool(getattr(training_args, "hub_private_repo", False)),
        revision=getattr(training_args, "hub_revision", None),
    )
    _check_token(api)
    with hub_errors(repo_id, action="create"):
        api.create_repo(repo_id, private=target.private, exist_ok=True, repo_type="model")
        if target.revision:
            api.create_branch(repo_id, branch=target.revision, exist_ok=True, repo_type="model")
        if api.file_exists(repo_id, CARD_NAME, revision=target.revision, repo_type="model"):
            raise CardExistsError(
                f"{repo_id}@{target.revision or 'main'} already has a {CARD_NAME}, which this run would replace; "
                "nothing was trained. Push to a new branch (--hub_revision NAME) or another repo, or train "
                "without --push_to_hub and publish with `recipes/push.py RUN_DIR --repo_id ... --overwrite`."
            )
    return target


def push_checkpoint_model(checkpoint: PathLike, target: HubTarget, *, step: int):
    """`hub_strategy: every_save`: start uploading the checkpoint's model files (never optimizer states:
    `allow_patterns` selects them) as a "training in progress" commit, in the background
    (`run_as_future=True`, as Trainer's own push). Returns the upload's Future, for `finish_checkpoint_push`."""
    from ..ema import EMA_FILE  # a checkpoint's weight EMA is not the model being pushed

    try:
        with hub_errors(target.repo_id):
            return target.api.upload_folder(
                repo_id=target.repo_id,
                folder_path=str(checkpoint),
                repo_type="model",
                revision=target.revision,
                allow_patterns=list(MODEL_FILES),
                ignore_patterns=[EMA_FILE],
                commit_message=f"Training in progress, step {step}",
                run_as_future=True,
            )
    except HubPushError as error:
        logger.warning("push at step %d failed, training goes on: %s", step, error)
        return None


def finish_checkpoint_push(future, target: HubTarget, *, step: int) -> None:
    """Wait for a checkpoint's upload; a failure is logged, not fatal: the run goes on and the final push
    reports."""
    if future is None:
        return
    try:
        with hub_errors(target.repo_id):
            future.result()
    except HubPushError as error:
        logger.warning("push at step %d failed, training goes on: %s", step, error)
    except Exception as error:  # whatever the Hub client raised in its worker thread
        logger.warning("push at step %d failed, training goes on: %s: %s", step, type(error).__name__, error)


CHECKPOINT_BRANCH = "last-checkpoint"  # hub_strategy: checkpoint pushes the resumable checkpoint here


def download_checkpoint(
    repo_id: str, local_dir: PathLike, *, api: Any = None, token: str | None = None
) -> Path:
    """The checkpoint a run with `hub_strategy: checkpoint` pushed to `repo_id`@last-checkpoint, downloaded into
    `local_dir` (for `--resume_from_checkpoint org/name`). Every failure is a `ValueError` that says why."""
    from huggingface_hub.errors import (
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    api = api if api is not None else _hf_api(token)
    where = f"{repo_id}@{CHECKPOINT_BRANCH}"
    try:
        path = api.snapshot_download(
            repo_id=repo_id, repo_type="model", revision=CHECKPOINT_BRANCH, local_dir=str(local_dir)
        )
    except RevisionNotFoundError:
        raise ValueError(
            f"--resume_from_checkpoint {repo_id}: the repo has no branch {CHECKPOINT_BRANCH!r}, so no checkpoint "
            "to resume (runs with --push_to_hub true --hub_strategy checkpoint push one there at every save)"
        ) from None
    except RepositoryNotFoundError:
        raise ValueError(
            f"--resume_from_checkpoint {repo_id}: no local folder of that name, and no Hub model repo you can "
            "read (check the name, and the token for a private repo)"
        ) from None
    except (OfflineModeIsEnabled, LocalEntryNotFoundError):
        raise ValueError(
            f"--resume_from_checkpoint {repo_id}: the checkpoint is on the Hub ({where}) and HF_HUB_OFFLINE is "
            "set, or the Hub cannot be reached; nothing was trained"
        ) from None
    except _transport_errors() as error:
        raise ValueError(
            f"--resume_from_checkpoint {repo_id}: could not reach the Hub to download {where} "
            f"({type(error).__name__}); nothing was trained"
        ) from None
    return Path(path)


def push_from_training_args(
    run: RunFolder | PathLike, training_args: Any, target: HubTarget | None = None
) -> str | None:
    """The recipes' `--push_to_hub true --hub_model_id org/name` path at the end of a run: push the finished
    folder (read once, or handed over already read), or exit with the reason (missing token, existing card,
    no network), never a traceback."""
    (run,) = as_run_folders(run)
    output_dir = run.path
    try:
        return push_to_hub(
            [run],
            training_args.hub_model_id,
            private=bool(getattr(training_args, "hub_private_repo", False)),
            revision=getattr(training_args, "hub_revision", None),
            token=getattr(training_args, "hub_token", None),
            api=target.api if target is not None else None,
        )
    except (HubPushError, ValueError, FileNotFoundError) as error:
        raise SystemExit(
            f"push_to_hub: {error}\nThe run in {output_dir} is complete and saved; publish it later with "
            f"`python recipes/push.py {output_dir} --repo_id {training_args.hub_model_id or 'org/name'}`."
        ) from None
