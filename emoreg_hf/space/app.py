"""Gradio demo of an EmoReg checkpoint: what it predicts, what it felt, and the weight ρ of its emotional response.

For an uploaded, webcam or example image the page shows the predicted classes, the regulation strength ρ (as a
number and in words), the emotion distribution e(x) as a bar chart, and the top classes of the two responses
(non-emotional z_N and emotional z_E) side by side. A plain image classifier (baseline / transfer run) gets
its predictions with ρ and e(x) marked "not applicable".

Run it locally on a run folder or a Hub repo (binds 127.0.0.1, port 7860 unless --port):

    python -m emoreg_hf.space outputs/demo/finetune [--port N]

In a Hugging Face Space this very file is the Space's `app.py`, and `classifier.py` (loading the checkpoint
and classifying, no gradio) sits next to it (`emoreg_hf.space.build_space_folder` copies both verbatim), so
it imports only gradio, transformers, torch, PIL and numpy (and pandas, which gradio installs) and that
sibling; the model comes with its own code (`trust_remote_code`). The model id is, in this order: the
command-line argument, the `EMOREG_MODEL` environment variable, the `model` of `emoreg_space.json` next to
this file (written by the Space builder).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

# No telemetry and no version check: the app must not reach the internet by itself (set before gradio loads).
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

try:  # in the package (`python -m emoreg_hf.space`)
    from .classifier import Classifier, LoadError, _image_error, load_classifier, predict, read_image
except ImportError:  # in a Space (`python app.py`): classifier.py is copied next to this file
    from classifier import Classifier, LoadError, _image_error, load_classifier, predict, read_image

MODEL_ENV = "EMOREG_MODEL"
SPACE_CONFIG = "emoreg_space.json"
DEFAULT_PORT = 7860
NOT_APPLICABLE = "not applicable"
DESCRIPTION = (
    "**Emotional Regulation** ([arXiv:2606.13081](https://arxiv.org/abs/2606.13081)): a task pathway gives the "
    "non-emotional response z_N, an affective pathway pretrained on emotions gives e(x) and the emotional "
    "response z_E, and the prediction is z = (1 − ρ)·z_N + ρ·z_E."
)


def default_title(model_id: str) -> str:
    """The page's title, the same locally and in a Space: `EmoReg: <the model as given>` (a run folder's path
    or a Hub repo id). `emoreg_hf.space.folder.default_title` is this rule too."""
    return f"EmoReg: {str(model_id).rstrip('/')}"


def how_to_use(examples: bool) -> str:
    """The page's one instruction; it offers examples only when there are some."""
    return "Upload an image or take one with the webcam" + (", or pick an example." if examples else ".")


# -- what the page says about the model -----------------------------------------------------------------


def card_link(model_id: str) -> str:
    """Where the reliance figures are: the card's Regulation statistics section (Markdown)."""
    if os.path.isdir(model_id):
        return f"the Regulation statistics of the model card (`{os.path.join(model_id, 'README.md')}`)"
    return f"the [Regulation statistics](https://huggingface.co/{model_id}#regulation-statistics) of the model card"


def describe_emotions(classifier: Classifier) -> str:
    """What e(x) is and is not, for a visitor (Markdown): the stage-1 model's reading of the image."""
    affect = classifier.affect
    data = ", ".join(affect.get("data") or []) or "its stage-1 data"
    classes = affect.get("control") or (
        f"the {len(classifier.emotions)} emotions of the `{affect.get('taxonomy') or '?'}` taxonomy"
    )
    return (
        f"e(x) is the affective pathway's output: a stage-1 model trained on {data} to recognise {classes}. "
        "On an image unlike those (a cat, for a model of facial expressions) it is that model's reading of the "
        "image, not a measured emotion."
    )


def synthetic_note(classifier: Classifier) -> str:
    """What a visitor must know before uploading a photograph to a demo model (Markdown); empty otherwise."""
    if not classifier.synthetic:
        return ""
    classes = ", ".join(classifier.labels)
    return (
        f"⚠️ **Trained on synthetic data.** This model learned from images that emoreg-hf draws itself "
        f"(its demo data), so it knows only these {len(classifier.labels)} classes: {classes}. A photograph "
        "still gets one of them, with a confidence that means nothing."
    )


# -- a prediction, as the page shows it -----------------------------------------------------------------


def describe_regulation(rho: float | None, card: str = "the model card") -> str:
    """ρ as a number and in words (Markdown); `card`: where the reliance figures are (`card_link`)."""
    if rho is None:
        return (
            f"**ρ: {NOT_APPLICABLE}**: this checkpoint has no affective pathway (it is not an EmoReg model), "
            "so there is no emotional response to weigh."
        )
    share = round(100 * rho)
    return (
        f"**ρ = {rho:.3f}**: the emotional response's logits weigh {share}% in the blended output "
        f"(the non-emotional response's {100 - share}%). ρ is a weight, not how much emotion was used: the "
        "emotional response also reads the task pathway's features. How much the answers depend on the "
        f"affective pathway is measured by the reliance figures: {card}."
    )


def describe_responses(result: dict) -> str:
    """The top class of the non-emotional and of the emotional response, side by side (a Markdown table)."""
    cells = []
    for key in ("non_emotional", "emotional"):
        top = result.get(key)
        if key not in result:  # nothing classified yet
            cells.append("–")
        else:
            cells.append(NOT_APPLICABLE if top is None else f"**{top['label']}** ({top['score']:.1%})")
    return (
        "| Non-emotional response z_N | Emotional response z_E |\n"
        "| :---: | :---: |\n"
        f"| {cells[0]} | {cells[1]} |"
    )


def render(result: dict, card: str = "the model card") -> tuple[dict, str, Any, str, str]:
    """What the page shows for `predict`'s result: class confidences (for `gr.Label`), ρ in words, e(x) as a
    DataFrame (for `gr.BarPlot`), a line about e(x), and the two responses side by side."""
    import pandas as pd  # installed with gradio

    labels = {item["label"]: float(item["score"]) for item in result["labels"]}
    emotions = result.get("emotions")
    if emotions is None:
        frame = pd.DataFrame({"emotion": pd.Series(dtype=str), "probability": pd.Series(dtype=float)})
        emotion_note = f"**e(x): {NOT_APPLICABLE}** (no affective pathway)."
    else:
        frame = pd.DataFrame(
            {"emotion": [e["label"] for e in emotions], "probability": [float(e["score"]) for e in emotions]}
        )
        top = emotions[0]
        emotion_note = f"Strongest emotion: **{top['label']}** ({top['score']:.1%})."
    return (
        labels,
        describe_regulation(result.get("regulation"), card),
        frame,
        emotion_note,
        describe_responses(result),
    )


# -- page ------------------------------------------------------------------------------------------------


def friendly_upload_errors(component: gr.Image) -> gr.Image:
    """Make an unreadable upload a message on the page (gr.Error) instead of a server error: gradio opens
    the file itself before the event function runs. (Overridden on the instance: a gr.Image subclass would
    make gradio write a .pyi stub next to this file.)"""
    original = component.preprocess

    def preprocess(payload):
        try:
            return original(payload)
        except gr.Error:
            raise
        except Exception as error:
            name = getattr(payload, "orig_name", None) or "the uploaded file"
            raise gr.Error(
                f"cannot read {name!r} as an image: {_image_error(error)}", print_exception=False
            ) from error

    component.preprocess = preprocess
    return component


def build_demo(
    classifier: Classifier,
    *,
    title: str | None = None,
    examples: list[tuple[str, str | None]] | tuple = (),
    top_k: int = 5,
) -> gr.Blocks:
    """The page for a loaded checkpoint. `examples`: `(path, caption)` pairs (caption may be None); without
    any, the page neither shows nor offers examples."""
    title = title or default_title(classifier.model_id)

    def respond(image_path):
        if image_path is None:
            raise gr.Error(how_to_use(bool(examples)).rstrip(".") + " first.", print_exception=False)
        try:
            result = predict(image_path, classifier, top_k=top_k, name=os.path.basename(str(image_path)))
        except ValueError as error:
            raise gr.Error(str(error), print_exception=False) from error
        return render(result, card_link(classifier.model_id))

    def respond_to_input(image_path):  # an upload, a webcam shot or a paste; clearing the image is no request
        return gr.skip() if image_path is None else respond(image_path)

    kind = (
        "EmoReg checkpoint" if classifier.emoreg else f"plain image classifier (ρ and e(x) {NOT_APPLICABLE})"
    )
    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(
            f"# {title}\n{DESCRIPTION} {how_to_use(bool(examples))}\n\nModel: `{classifier.model_id}` ({kind})."
        )
        if classifier.synthetic:
            gr.Markdown(synthetic_note(classifier), elem_id="synthetic-note")
        # Outputs are made first (not yet drawn) so that the examples, drawn under the image, can name them.
        classes = gr.Label(num_top_classes=top_k, label="Predicted classes", elem_id="classes", render=False)
        regulation = gr.Markdown("ρ: upload an image", elem_id="regulation", render=False)
        responses = gr.Markdown(describe_responses({}), elem_id="responses", render=False)
        emotions = gr.BarPlot(
            x="emotion",
            y="probability",
            y_lim=[0, 1],
            sort="-y",
            label="e(x): the stage-1 model's emotion distribution",
            elem_id="emotions",
            render=False,
        )
        emotion_note = gr.Markdown(elem_id="emotion-note", render=False)
        emotion_source = gr.Markdown(
            describe_emotions(classifier) if classifier.emoreg else "", elem_id="emotion-source", render=False
        )
        outputs = [classes, regulation, emotions, emotion_note, responses]
        with gr.Row():
            with gr.Column(scale=1):
                image = friendly_upload_errors(
                    gr.Image(
                        type="filepath",
                        image_mode=None,
                        sources=["upload", "webcam", "clipboard"],
                        label="Image",
                        height=320,
                        elem_id="image",
                    )
                )
                button = gr.Button("Classify", variant="primary")
                if examples:
                    gr.Examples(
                        examples=[[str(path)] for path, _ in examples],
                        example_labels=[caption or Path(path).stem for path, caption in examples],
                        inputs=image,
                        outputs=outputs,
                        fn=respond,
                        run_on_click=True,
                        cache_examples=False,
                    )
            with gr.Column(scale=1):
                for component in (classes, regulation, responses, emotions, emotion_note, emotion_source):
                    component.render()
        button.click(respond, inputs=image, outputs=outputs)
        image.input(respond_to_input, inputs=image, outputs=outputs)
    return demo


# -- command line / Space entry point ------------------------------------------------------------------


def space_settings(folder: str | os.PathLike | None = None) -> dict:
    """`emoreg_space.json` next to this file (or in `folder`): what the Space builder recorded."""
    path = Path(folder or Path(__file__).resolve().parent) / SPACE_CONFIG
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m emoreg_hf.space",
        description="Gradio demo of an EmoReg checkpoint (predicted classes, rho, e(x), both responses).",
    )
    parser.add_argument(
        "model",
        nargs="?",
        help=f"run folder or Hub repo id (default: ${MODEL_ENV}, else the model in {SPACE_CONFIG})",
    )
    parser.add_argument(
        "--port", type=int, default=None, help=f"port (default: $GRADIO_SERVER_PORT or {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--host",
        default=None,
        help="address to bind (default: $GRADIO_SERVER_NAME or 127.0.0.1, this machine only)",
    )
    parser.add_argument(
        "--device", default=None, help="torch device, e.g. cpu or cuda:0 (default: as transformers picks)"
    )
    parser.add_argument("--top_k", type=int, default=5, help="number of classes shown (default: 5)")
    parser.add_argument("--title", default=None, help="page title (default: 'EmoReg: MODEL', MODEL as given)")
    parser.add_argument(
        "--example",
        action="append",
        default=[],
        metavar="IMAGE",
        help="an example image to offer (repeatable)",
    )
    return parser.parse_args(argv)


def stage_examples(examples: list[tuple[str, str | None]]) -> tuple[list[tuple[str, str | None]], str | None]:
    """Copy the example images into a new private folder of their own and return the copies (and the
    folder). The server may serve files from that folder only: serving an example's own folder would serve
    every file beside it (a token, your other files). Each example is checked to be an image first;
    `ValueError` names the one that is not."""
    for path, _ in examples:
        read_image(path)  # a missing or unreadable example stops the app before it serves anything
    if not examples:
        return [], None
    folder = tempfile.mkdtemp(prefix="emoreg-space-examples-")
    atexit.register(shutil.rmtree, folder, True)
    staged, used = [], set()
    for index, (path, caption) in enumerate(examples):
        name = os.path.basename(str(path))
        if name.lower() in used:
            stem, suffix = os.path.splitext(name)
            name = f"{stem}_{index + 1}{suffix}"
        used.add(name.lower())
        shutil.copyfile(path, os.path.join(folder, name))
        staged.append((os.path.join(folder, name), caption or Path(path).stem))
    return staged, folder


def main(argv=None) -> int:
    args = parse_args(argv)
    settings = space_settings()
    model_id = args.model or os.environ.get(MODEL_ENV) or settings.get("model")
    if not model_id:
        print(f"error: no model given: pass a run folder or Hub repo id, or set {MODEL_ENV}", file=sys.stderr)
        return 2
    base = Path(__file__).resolve().parent
    examples = [(path, None) for path in args.example] or [
        (str(base / item["path"]), item.get("caption")) for item in settings.get("examples", [])
    ]
    try:
        examples, examples_folder = stage_examples(examples)
    except ValueError as error:
        print(f"error: example image: {error}", file=sys.stderr)
        return 2
    try:
        classifier = load_classifier(model_id, device=args.device)
    except LoadError as error:  # a bad input, as every emoreg-hf command ends one: exit 2, nothing served
        print(f"error: {error}", file=sys.stderr)
        return 2
    demo = build_demo(
        classifier, title=args.title or settings.get("title"), examples=examples, top_k=args.top_k
    )
    host = args.host or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    port = args.port or int(os.environ.get("GRADIO_SERVER_PORT") or DEFAULT_PORT)
    allowed = [examples_folder] if examples_folder else []
    demo.launch(server_name=host, server_port=port, show_error=True, ssr_mode=False, allowed_paths=allowed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
