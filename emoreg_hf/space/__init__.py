"""A Gradio demo of an EmoReg checkpoint, to run locally or as a Hugging Face Space.

- `python -m emoreg_hf.space RUN_DIR_OR_REPO [--port N]` serves the demo on 127.0.0.1 (needs the `space`
  extra: `pip install emoreg-hf[space]`).
- `build_space_folder(model_repo_id, out_dir, ...)` writes a Space (app.py, classifier.py, requirements.txt,
  README.md, examples/) that runs the same app on a Hub model.
- `load_classifier` and `predict` (in `emoreg_hf.space.classifier`, no gradio), `render` and `build_demo` (in
  `emoreg_hf.space.app`) are the app's parts.

`build_space_folder` needs no gradio; the app's names are imported from `classifier.py` / `app.py` on first use.
"""

from __future__ import annotations

from .folder import build_space_folder, space_requirements

_CLASSIFIER_NAMES = ("Classifier", "LoadError", "load_classifier", "predict")
_APP_NAMES = ("build_demo", "main", "render")


def __getattr__(name: str):
    if name in _CLASSIFIER_NAMES:
        from . import classifier

        return getattr(classifier, name)
    if name in _APP_NAMES:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["build_space_folder", "space_requirements", *_CLASSIFIER_NAMES, *_APP_NAMES]
