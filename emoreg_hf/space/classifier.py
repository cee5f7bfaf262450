"""An EmoReg checkpoint loaded and classifying, without gradio: the half of the demo that knows the model.

Load a run folder or Hub repo as its own `emoreg-image-classification` pipeline (a plain image classifier as
`image-classification`), read what its e(x) was trained on from the run records, read an image, predict.
Like `app.py`, which imports it, it is copied verbatim into a Hugging Face Space (`build_space_folder`), so
it imports only transformers, torch and PIL; the model comes with its own code (`trust_remote_code`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

TASK = "emoreg-image-classification"
RUN_RECORD = "run_info.json"  # the run record a run folder (and its Hub export) carries


# -- model ---------------------------------------------------------------------------------------------


class LoadError(RuntimeError):
    """The checkpoint cannot be loaded as an image classifier; the message says why, for a person."""


@dataclass
class Classifier:
    """A loaded checkpoint: its pipeline and what the page needs to know about it."""

    model_id: str
    pipeline: Any
    emoreg: bool
    labels: list[str] = field(default_factory=list)
    emotions: list[str] = field(default_factory=list)
    synthetic: bool = False  # trained on emoreg-hf's synthetic demo data (its run record says so)
    affect: dict = field(default_factory=dict)  # what e(x) was trained on (`affect_provenance`)


def load_classifier(model_id: str, *, device: str | int | None = None) -> Classifier:
    """Load a run folder or Hub repo: the checkpoint's own `emoreg-image-classification` pipeline for EmoReg
    checkpoints, the plain `image-classification` pipeline for any other image classifier. Raises `LoadError`
    with a readable reason otherwise."""
    from transformers import AutoConfig, pipeline

    model_id = os.path.expanduser(str(model_id))
    looks_local = model_id.startswith(("/", ".", "~")) or model_id.count("/") > 1 or "\\" in model_id
    if looks_local and not os.path.isdir(model_id):
        raise LoadError(f"cannot load the checkpoint {model_id!r}: no such folder (and not a Hub repo id)")
    if os.path.isdir(model_id) and not os.path.isfile(os.path.join(model_id, "config.json")):
        raise LoadError(
            f"cannot load the checkpoint {model_id!r}: the folder has no config.json, so it holds no saved "
            "model; give a finished run folder (or the Hub repo id it was pushed to)"
        )
    try:
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=True)
    except Exception as error:  # OSError, ValueError, EnvironmentError, ... from the Hub client
        if not os.path.isdir(model_id) and os.path.isdir(model_id.split("/")[0]):
            # `outputs/run` where `outputs/` exists: a local path with a typo, not a Hub repo
            raise LoadError(
                f"cannot load the checkpoint {model_id!r}: no such folder (in {os.getcwd()}), and not a "
                "Hub repo id either"
            ) from error
        raise LoadError(
            f"cannot load the checkpoint {model_id!r}: "
            + ("" if os.path.isdir(model_id) else "no such local folder, and as a Hub repo id: ")
            + _first_line(error)
        ) from error
    architectures = list(getattr(config, "architectures", None) or [])
    emoreg = TASK in (getattr(config, "custom_pipelines", None) or {})
    if not emoreg and not any("ImageClassification" in name for name in architectures):
        raise LoadError(
            f"{model_id!r} is not an image classifier (architectures: {', '.join(architectures) or 'none'}, "
            f"model_type={getattr(config, 'model_type', None)!r}); give an EmoReg run folder or Hub repo"
        )
    task = TASK if emoreg else "image-classification"
    try:
        classify = pipeline(task, model=model_id, trust_remote_code=True, device=device)
    except Exception as error:
        raise LoadError(f"cannot load {model_id!r} as an {task} pipeline: {_first_line(error)}") from error
    config = classify.model.config
    labels = [config.id2label[i] for i in sorted(config.id2label)]
    emotions = list(getattr(config, "emotion_labels", None) or []) if emoreg else []
    record = run_record(model_id)
    return Classifier(
        model_id=model_id,
        pipeline=classify,
        emoreg=emoreg,
        labels=labels,
        emotions=emotions,
        synthetic=bool(record.get("synthetic_data")),
        affect=affect_provenance(config, record) if emoreg else {},
    )


# The affective checkpoint's config flags of a stage 1 that learned other classes than emotions.
STAGE1_CONTROLS = {
    "kmeans_labels": "k-means clusters of its images (the non-emotion control), not emotions",
    "target_task_labels": "the target task's classes (the positive control), not emotions",
    "shuffled_emotion_labels": "randomly permuted emotion labels (the shuffled-emotion diagnostic)",
}


def affect_provenance(config, record: dict) -> dict:
    """What e(x) was trained on: the stage-1 taxonomy and variant from the checkpoint's config, and the
    stage-1 data sets from the stage-1 run's record where it can be read (a local folder, a Hub repo)."""
    affect = getattr(config, "affect_config", None)
    taxonomy = getattr(affect, "emotion_taxonomy", None) or getattr(config, "emotion_taxonomy", None)
    name = taxonomy.get("name") if isinstance(taxonomy, dict) else taxonomy
    models = record.get("models") or {}
    stage1 = run_record(models.get("affect_path") or models.get("affect") or "") if models else {}
    return {
        "taxonomy": name if isinstance(name, str) else None,
        "control": next(
            (text for flag, text in STAGE1_CONTROLS.items() if getattr(affect, flag, False)), None
        ),
        "data": [d.get("name") or d.get("id") for d in stage1.get("datasets") or [] if isinstance(d, dict)],
    }


def run_record(model_id: str) -> dict:
    """The checkpoint's run record (`run_info.json`, in a run folder and in its Hub export), or {} when it has
    none or it cannot be read (then nothing is claimed about the training data)."""
    try:
        if os.path.isdir(model_id):
            path = os.path.join(model_id, RUN_RECORD)
        else:
            from transformers.utils import cached_file

            path = cached_file(model_id, RUN_RECORD, _raise_exceptions_for_missing_entries=False)
        if not path or not os.path.isfile(path):
            return {}
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except Exception:  # offline, no such file, not JSON: the page just makes no claim
        return {}
    return record if isinstance(record, dict) else {}


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:500]


# -- prediction ----------------------------------------------------------------------------------------


def read_image(image, name: str | None = None) -> Image.Image:
    """A path or a PIL image as an upright PIL image; `ValueError` naming the file if it is not readable."""
    if isinstance(image, Image.Image):
        return image
    label = name or (os.path.basename(str(image)) if image is not None else "the image")
    if image is None:
        raise ValueError("no image given: upload an image or take one with the webcam")
    try:
        with open(image, "rb") as handle:
            opened = Image.open(handle)
            opened.load()
    except FileNotFoundError as error:
        raise ValueError(f"cannot read {label!r}: no such file") from error
    except Exception as error:  # not an image, truncated or corrupt data, unreadable file, ...
        raise ValueError(f"cannot read {label!r} as an image: {_image_error(error)}") from error
    return ImageOps.exif_transpose(opened)


def _image_error(error: BaseException) -> str:
    """Why Pillow could not read a file, without the server-side path of the upload."""
    if isinstance(error, UnidentifiedImageError):
        return "not an image file (or a format Pillow cannot decode)"
    return _first_line(error)


def predict(image, classifier: Classifier, *, top_k: int = 5, name: str | None = None) -> dict:
    """Classify one image (a path or a PIL image). Returns the pipeline's dict: `labels` (top-k task classes,
    `{"label", "score"}`), `regulation` (ρ), `emotions` (all of e(x), most likely first), `non_emotional`
    and `emotional` (top class of each response); the last four are None for a non-EmoReg checkpoint."""
    picture = read_image(image, name=name)
    if classifier.emoreg:
        result = classifier.pipeline(picture, top_k=top_k, top_k_emotions=max(1, len(classifier.emotions)))
        return dict(result)
    labels = classifier.pipeline(picture, top_k=top_k)
    return {"labels": labels, "regulation": None, "emotions": None, "non_emotional": None, "emotional": None}
