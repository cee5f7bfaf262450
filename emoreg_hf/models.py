"""The models of each stage, built from the recipe arguments: stage 1's emotion classifier, and stage 2's
EmoReg model or one of its controls (the task backbone alone, or the affective backbone fine-tuned)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os

from . import registry, stage1_variants

logger = logging.getLogger(__name__)

DEFAULT_MEAN = [0.5, 0.5, 0.5]
DEFAULT_STD = [0.5, 0.5, 0.5]


def _labels(names) -> dict:
    names = list(names)
    return {
        "num_labels": len(names),
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
    }


def config_from_dict(model_config: dict, names, image_size: int | None):
    """`AutoConfig.for_model` from a YAML dict, labelled, with `image_size` where the family has one."""
    from transformers import AutoConfig

    fields = dict(model_config)
    model_type = fields.pop("model_type")
    config = AutoConfig.for_model(model_type, **fields, **_labels(names))
    if image_size is not None and hasattr(config, "image_size") and "image_size" not in fields:
        config.image_size = image_size
    return config


def geometry(name_or_path: str | None, image_size: int | None) -> dict:
    """Input size / mean / std of a checkpoint's processor; defaults for a model built from scratch."""
    from .backbones import _processor_geometry

    found = _processor_geometry(name_or_path) if name_or_path else {}
    size = found.get("size") or ([image_size, image_size] if image_size else None)
    if size is None:
        raise ValueError(
            f"cannot tell the input size of {name_or_path or 'a model built from scratch'}: "
            "it has no image processor; pass --image_size"
        )
    return {"size": size, "mean": found.get("mean", DEFAULT_MEAN), "std": found.get("std", DEFAULT_STD)}


def checkpoint_config(option: str, name_or_path: str) -> dict:
    """The `config.json` of a checkpoint a recipe names (a local folder or a Hub id), read before any data
    is loaded, with an error that says which of the two it is not."""
    from huggingface_hub import constants, try_to_load_from_cache

    if os.path.isdir(name_or_path):
        config = os.path.join(name_or_path, "config.json")
        if not os.path.isfile(config):
            raise FileNotFoundError(
                f"--{option} {name_or_path!r} is a folder without config.json, so not a checkpoint: point it "
                "at the --output_dir of a finished run (or a saved model)"
            )
        with open(config) as f:
            return json.load(f)
    if (
        name_or_path.startswith((".", "/", "~"))
        or name_or_path.count("/") > 1
        or os.path.exists(name_or_path)
    ):
        raise FileNotFoundError(f"--{option} {name_or_path!r}: no such local folder")
    if constants.HF_HUB_OFFLINE:
        cached = try_to_load_from_cache(name_or_path, "config.json")
        if not isinstance(cached, str):
            raise FileNotFoundError(
                f"--{option} {name_or_path!r}: no such local folder, and HF_HUB_OFFLINE=1 means no Hub id can "
                "be fetched either (it is not in the local Hub cache)"
            )
        with open(cached) as f:
            return json.load(f)
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name_or_path).to_dict()
    except (OSError, ValueError) as error:
        raise FileNotFoundError(
            f"--{option} {name_or_path!r} is neither a local folder nor a Hub model that could be fetched "
            f"({str(error).splitlines()[0]})"
        ) from None


def checkpoint_options(args) -> list[str]:
    """The checkpoint options a recipe's arguments use: stage 1's backbone, or the pathways of the method."""
    method = registry.method(getattr(args, "method", None))
    if method is None:
        return ["model_name_or_path"]
    return [f"{pathway}_model_name_or_path" for pathway in method.pathways]


def check_checkpoints(args, *, from_demo_config: set[str] | frozenset = frozenset()) -> None:
    """Before any data is loaded: every checkpoint the recipe names exists, and a stage-1 checkpoint is an
    emotion model (its config carries the emotion taxonomy stage 1 writes). A stage-1 model of synthetic
    stimuli with real target data is refused when it came from the demo YAML for want of a config
    (`from_demo_config`), and said loudly when it was chosen."""
    check_demo_pathway(args, from_demo_config)
    for option in checkpoint_options(args):
        value = getattr(args, option, None)
        if not value:
            continue
        config = checkpoint_config(option, value)
        if option == "affect_model_name_or_path":
            check_emotion_head(value, config)


def _head_labels(config: dict) -> list[str]:
    id2label = config.get("id2label") or {}
    return [str(id2label[k]) for k in sorted(id2label, key=int)]


def check_emotion_head(name: str, config: dict) -> None:
    """A stage-1 checkpoint is an emotion classifier: its config carries the emotion taxonomy stage 1 writes
    and its head classifies that taxonomy's emotions (`head_classifies: emotion`; a checkpoint written
    before that field existed must name the taxonomy's emotions in `id2label`). A `transfer` fine-tune
    keeps its stage 1's taxonomy but classifies the target's classes, so it is refused here."""
    from .taxonomy import get_label_space

    labels = _head_labels(config)
    shown = f"{labels[:5]}{'...' if len(labels) > 5 else ''}"
    taxonomy = config.get("emotion_taxonomy")
    if not taxonomy:
        raise ValueError(
            f"--affect_model_name_or_path {name!r} is not an affective checkpoint: its config carries no "
            f"emotion taxonomy (`emotion_taxonomy`), which recipes/pretrain.py writes (it is a "
            f"{config.get('model_type', '?')} model with classes {shown}). "
            "Point it at a stage-1 output_dir; for an emotion classifier trained elsewhere, add "
            "`emotion_taxonomy` to its config.json."
        )
    head = config.get("head_classifies")
    try:
        emotions = list(get_label_space(taxonomy).names)
    except ValueError:
        emotions = None
    if head not in (None, "emotion") or (head is None and emotions is not None and labels != emotions):
        raise ValueError(
            f"--affect_model_name_or_path {name!r} is not an affective checkpoint: it carries the emotion "
            f"taxonomy of its stage 1 ({taxonomy if isinstance(taxonomy, str) else 'a custom one'}), but its "
            f"head classifies {shown}, not emotions (a stage-2 `transfer` fine-tune looks like this). Point "
            "it at the stage-1 output_dir it was fine-tuned from."
        )


def emotion_labels(model) -> list[str] | None:
    """The emotions of an EmoReg model's affective pathway, in the order of its `emotion_probs`; None for a
    model without one (its evaluation has no regulation statistics)."""
    return model.config.emotion_labels if hasattr(model.config, "affect_config") else None


def _synthetic_stage1(path: str) -> bool:
    """The stage-1 run folder's record says it was trained on the embedded synthetic demo data."""
    record = os.path.join(path, "run_info.json")
    try:
        with open(record) as f:
            return bool(json.load(f).get("synthetic_data"))
    except (OSError, ValueError, AttributeError):
        return False


def check_demo_pathway(args, from_demo_config) -> None:
    """Real target data never inherits the demo's synthetic affective pathway without a word."""
    affect = getattr(args, "affect_model_name_or_path", None)
    method = registry.method(getattr(args, "method", None))
    if method is None or not method.uses_affect or not affect:
        return
    from .data import is_synthetic, resolve_target_spec

    target = resolve_target_spec(args.dataset)
    if is_synthetic(target):
        return
    if "affect_model_name_or_path" in from_demo_config:
        raise ValueError(
            f"no config file was given, so the affective pathway would be the demo's (affect_model_name_or_path: "
            f"{affect}, from recipes/demo/finetune.yaml), a stage 1 of synthetic stimuli, while the target data is "
            f"real ({target.display_name}); nothing was loaded. Pass --affect_model_name_or_path with a stage-1 "
            "checkpoint of real emotion data (recipes/pretrain.py), or a config file (--method baseline needs "
            f"none); --affect_model_name_or_path {affect} keeps the demo's on purpose."
        )
    if os.path.isdir(affect) and _synthetic_stage1(affect):
        logger.warning(
            "\n%s\nTHE AFFECTIVE PATHWAY %s WAS TRAINED ON SYNTHETIC DEMO STIMULI, the target data (%s) is real:\n"
            "its emotions e(x) say nothing about real images, and the model card says so.\n%s",
            "!" * 100,
            affect,
            target.display_name,
            "!" * 100,
        )


def build_pretrain_model(args, emotion_names, color_mode: str = "rgb", taxonomy: dict | None = None):
    """Stage 1: a plain AutoModelForImageClassification with one output per emotion, whose config records
    what it was trained on (taxonomy, controls, input colour mode and size) for stage 2."""
    from transformers import AutoModelForImageClassification

    if args.model_name_or_path:
        model = AutoModelForImageClassification.from_pretrained(
            args.model_name_or_path, ignore_mismatched_sizes=True, **_labels(emotion_names)
        )
        model_geometry = geometry(args.model_name_or_path, args.image_size)
    else:
        config = config_from_dict(args.model_config, emotion_names, args.image_size)
        model, model_geometry = (
            AutoModelForImageClassification.from_config(config),
            geometry(None, args.image_size),
        )
    # Provenance that travels inside config.json, so stage 2 (and its card) knows what the experience means.
    model.config.emotion_taxonomy = args.taxonomy if taxonomy is None else taxonomy
    # e.g. shuffled_emotion_labels, kmeans_labels (non-emotion control), target_task_labels (positive control)
    for flag, value in stage1_variants.stage1_checkpoint_flags(args).items():
        setattr(model.config, flag, value)
    # What the pathway saw: EmoReg feeds it the same (grayscale faces -> the luminance of a colour image).
    model.config.input_color_mode = color_mode
    model.config.input_size = list(model_geometry["size"])
    model.config.head_classifies = "emotion"
    return model, {**model_geometry, "color_mode": color_mode}


def build_finetune_model(args, label_names):
    """Stage 2 for `method` (see `registry.METHODS`): a regulated model of both pathways (EmoReg), or the one
    pathway an unregulated method has, fine-tuned alone (the task backbone: baseline; the affective
    backbone: transfer)."""
    from transformers import AutoModelForImageClassification

    from .configuration_emoreg import emoreg_options
    from .modeling_emoreg import EmoRegForImageClassification

    method = registry.METHODS[args.method]
    labels = _labels(label_names)
    if not method.uses_task:  # the affective backbone itself
        model = AutoModelForImageClassification.from_pretrained(
            args.affect_model_name_or_path, ignore_mismatched_sizes=True, **labels
        )
        if args.affect_init == "random":
            model = AutoModelForImageClassification.from_config(model.config)
        model.config.head_classifies = "target"  # its stage-1 taxonomy stays as provenance; its head does not
        return model, geometry(args.affect_model_name_or_path, args.image_size)

    task_geometry = geometry(args.task_model_name_or_path, args.image_size)
    if not method.regulated:  # the task backbone alone
        if args.task_model_name_or_path:
            model = AutoModelForImageClassification.from_pretrained(
                args.task_model_name_or_path, ignore_mismatched_sizes=True, **labels
            )
        else:
            model = AutoModelForImageClassification.from_config(
                config_from_dict(args.task_model_config, label_names, args.image_size)
            )
        return model, task_geometry

    task_config = None
    if args.task_model_config is not None:
        task_config = config_from_dict(args.task_model_config, label_names, args.image_size)
    model = EmoRegForImageClassification.from_backbones(
        args.task_model_name_or_path,
        args.affect_model_name_or_path,
        task_config=task_config,
        task_image_size=task_geometry["size"],
        task_image_mean=task_geometry["mean"],
        task_image_std=task_geometry["std"],
        affect_image_color_mode=None if args.affect_color_mode == "auto" else args.affect_color_mode,
        **dataclasses.asdict(emoreg_options(args)),
        **labels,
    )
    if args.affect_init == "random":
        model.reset_affective_pathway()
    return model, task_geometry
