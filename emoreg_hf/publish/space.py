"""The Space folder of a run: the Gradio app that shows what the model felt, pinned requirements, Space
metadata and example images, checked like a model export before anything leaves."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..space.examples import demo_examples
from .export import check_export
from .runs import PathLike, RunFolder, as_run_folders


def export_space(
    run_dir: RunFolder | PathLike,
    out_dir: PathLike,
    *,
    space_id: str,
    model_repo_id: str,
    examples: Sequence[PathLike | tuple[PathLike, str]] = (),
) -> Path:
    """Write the Space folder for `model_repo_id` into `out_dir` (new or empty) and check it."""
    from ..space import build_space_folder

    (run,) = as_run_folders(run_dir)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"Space folder {out_dir} is not empty.")
    staging = out_dir.parent / f".{out_dir.name}-examples"
    try:
        chosen = list(examples) or demo_examples(run.record, staging)
        build_space_folder(
            model_repo_id,
            out_dir,
            example_images=[e if isinstance(e, tuple) else (e, "provided by the uploader") for e in chosen],
            short_description=f"What {model_repo_id.split('/')[-1]} felt, and how it weighed it",
        )
    finally:
        for path in staging.glob("*") if staging.is_dir() else []:
            path.unlink()
        if staging.is_dir():
            os.rmdir(staging)
    problems = check_export(out_dir, local_paths=[run.path.resolve()])
    if problems:
        raise ValueError(f"Refusing to publish the Space {space_id}:\n  " + "\n  ".join(problems))
    return out_dir
