"""Write a Hugging Face Space folder that demos an EmoReg model from the Hub.

    build_space_folder("your-org/emoreg-demo", "space", example_images=[("cat.jpg", "A cat (CC0)")])

gives `app.py` and `classifier.py` (verbatim copies of `emoreg_hf/space/app.py` and the model half it imports:
standalone, the model brings its own code),
`emoreg_space.json` (the model id, title and examples the app starts with; `EMOREG_MODEL` overrides the
model), `requirements.txt` (pinned to this environment), `README.md` (Space metadata) and `examples/`.
Nothing here needs gradio installed, except to read its version for `sdk_version`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path

from huggingface_hub import SpaceCardData

APP_SOURCE = Path(__file__).resolve().parent / "app.py"
# The app's own modules, copied next to it: it imports `classifier` (loading the checkpoint, predicting).
APP_MODULES = (APP_SOURCE, APP_SOURCE.parent / "classifier.py")
SPACE_CONFIG = "emoreg_space.json"  # the name app.py reads (app.SPACE_CONFIG)
# What the Space installs: the app (gradio), the model's remote code (torch, transformers, and torchvision for
# the image processors, timm for timm backbones) and the image stack.
SPACE_PACKAGES = ("gradio", "torch", "torchvision", "transformers", "timm", "pillow", "numpy")
SHORT_DESCRIPTION_MAX = 60  # the Hub's limit for `short_description`


def default_title(model_repo_id: str) -> str:
    """The Space's title: the app's own rule (`app.default_title`), `EmoReg: <repo id>`."""
    return f"EmoReg: {str(model_repo_id).rstrip('/')}"


def space_requirements(packages: Sequence[str] = SPACE_PACKAGES) -> list[str]:
    """`name==version` for each package, at the version installed here (local labels such as `+cpu` dropped,
    since the Space installs from PyPI). Raises if one is not installed: an unpinned Space drifts."""
    lines = []
    for name in packages:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError as error:
            raise RuntimeError(
                f"cannot pin {name!r} for the Space: it is not installed here (pip install 'emoreg-hf[space]')"
            ) from error
        lines.append(f"{name}=={version.split('+')[0]}")
    return lines


def build_space_folder(
    model_repo_id: str,
    out_dir: str | os.PathLike,
    *,
    title: str | None = None,
    example_images: Iterable[str | os.PathLike | tuple[str | os.PathLike, str | None]] = (),
    license: str = "apache-2.0",
    emoji: str = "🎭",
    color_from: str = "indigo",
    color_to: str = "pink",
    short_description: str | None = None,
    sdk_version: str | None = None,
    python_version: str | None = None,
    packages: Sequence[str] = SPACE_PACKAGES,
) -> list[Path]:
    """Write a Gradio Space for `model_repo_id` into `out_dir`; return the paths of the files written.

    `example_images`: paths or `(path, caption)` pairs, copied to `examples/` and listed (with captions) in
    the README; the caller is responsible for their licences. `sdk_version` defaults to the installed
    gradio, `python_version` to this interpreter's; `requirements.txt` pins `packages` at the versions
    installed here.
    """
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", model_repo_id or ""):
        raise ValueError(f"model_repo_id must be a Hub repo id 'owner/name', got {model_repo_id!r}")
    example_images = check_example_images(example_images)  # before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = title or default_title(model_repo_id)
    requirements = space_requirements(packages)
    if sdk_version is None:
        pinned = {line.split("==")[0]: line.split("==")[1] for line in requirements}
        sdk_version = pinned.get("gradio") or _installed_gradio()
    python_version = python_version or f"{sys.version_info.major}.{sys.version_info.minor}"

    written: list[Path] = []

    def write(name: str, text: str) -> None:
        path = out / name
        path.write_text(text, encoding="utf-8")
        written.append(path)

    for source in APP_MODULES:
        shutil.copyfile(source, out / source.name)
        written.append(out / source.name)

    examples = _copy_examples(example_images, out / "examples")
    written.extend(out / item["path"] for item in examples)

    settings = {"model": model_repo_id, "title": title, "examples": examples}
    write(SPACE_CONFIG, json.dumps(settings, indent=2, ensure_ascii=False) + "\n")
    write("requirements.txt", "\n".join(requirements) + "\n")

    description = short_description or f"EmoReg demo of {model_repo_id}"
    card = SpaceCardData(
        title=title,
        emoji=emoji,
        colorFrom=color_from,
        colorTo=color_to,
        sdk="gradio",
        sdk_version=sdk_version,
        python_version=python_version,
        app_file="app.py",
        models=[model_repo_id],
        license=license,
        pinned=False,
        short_description=description[:SHORT_DESCRIPTION_MAX],
    )
    write("README.md", f"---\n{card.to_yaml()}\n---\n\n{_readme_body(model_repo_id, title, examples)}")
    return written


def _installed_gradio() -> str:
    try:
        return metadata.version("gradio").split("+")[0]
    except metadata.PackageNotFoundError as error:
        raise RuntimeError("pass sdk_version, or install gradio (pip install 'emoreg-hf[space]')") from error


def check_example_images(example_images) -> list[tuple[Path, str | None]]:
    """`(path, caption)` for each example, after checking that every one exists and decodes as an image
    (`FileNotFoundError` / `ValueError` naming the first that does not), so nothing is written for a list
    with a bad entry."""
    import PIL.Image

    checked = []
    for entry in example_images:
        path, caption = entry if isinstance(entry, (tuple, list)) else (entry, None)
        source = Path(path)
        if not source.is_file():
            raise FileNotFoundError(f"example image {str(path)!r} does not exist")
        try:
            with PIL.Image.open(source) as image:
                image.load()
        except Exception as error:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
            reason = "not an image file" if isinstance(error, PIL.UnidentifiedImageError) else error
            raise ValueError(f"example image {str(path)!r} cannot be read as an image ({reason})") from None
        checked.append((source, caption))
    return checked


def _copy_examples(example_images, folder: Path) -> list[dict]:
    """Copy the images to `folder` under unique names; `[{"path": "examples/NAME", "caption": ...}]`."""
    items = []
    used: set[str] = set()
    for source, caption in check_example_images(example_images):
        name = re.sub(r"[^\w.-]+", "_", source.name)
        stem, suffix = os.path.splitext(name)
        n = 1
        while name.lower() in used:
            n += 1
            name = f"{stem}_{n}{suffix}"
        used.add(name.lower())
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / name)
        items.append({"path": f"examples/{name}", "caption": caption})
    return items


def _readme_body(model_repo_id: str, title: str, examples: list[dict]) -> str:
    lines = [
        f"# {title}",
        "",
        f"Interactive demo of [{model_repo_id}](https://huggingface.co/{model_repo_id}), an image classifier "
        "trained with **Emotional Regulation** ([arXiv:2606.13081](https://arxiv.org/abs/2606.13081)).",
        "For an uploaded or webcam image it shows the predicted classes, the regulation weight ρ (the weight of the "
        "emotional response's logits in the output; not a measure of how much emotion was used), the emotion "
        "distribution e(x), and the top classes of the non-emotional and the emotional responses side by side.",
        "",
        "The model is loaded with `trust_remote_code=True`: its repository carries the EmoReg code, "
        "including the `emoreg-image-classification` pipeline this app uses. Set the `EMOREG_MODEL` "
        "variable in the Space settings to demo another checkpoint.",
        "",
        "`app.py` (the page) and `classifier.py` (loading the checkpoint and classifying an image) are the "
        "demo of emoreg-hf, copied unchanged.",
    ]
    if examples:
        lines += ["", "## Example images", ""]
        lines += [
            f"- `{item['path']}`" + (f": {item['caption']}" if item["caption"] else "") for item in examples
        ]
    lines += [
        "",
        "## Run locally",
        "",
        "```bash",
        "pip install -r requirements.txt",
        "python app.py   # http://127.0.0.1:7860; EMOREG_MODEL=owner/name picks another model",
        "```",
        "",
    ]
    return "\n".join(lines)


__all__ = [
    "SPACE_PACKAGES",
    "build_space_folder",
    "check_example_images",
    "default_title",
    "space_requirements",
]
