"""What may leave the machine: secrets dropped and absolute local paths rewritten in anything published."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

SECRET_KEYS = {"hub_token", "token", "push_to_hub_token", "hf_token", "api_key", "wandb_api_key"}
TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
# An absolute path not glued to a word, a URL or another path: `/data/x`, `~/x` (but not `org/name`, `https://`).
ABS_PATH_RE = re.compile(r"(?<![\w.:/~-])(?:/|~/)[^\s\"'`,;()\[\]{}<>|]+")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


PROJECT = Path(__file__).resolve().parents[2]  # the checkout (or site-packages) that holds emoreg_hf
# What a local path outside the project becomes in anything published: this prefix, then its name (or, in a
# study's records, its place in the study: `/path/to/<study>/pretrain/normal/seed0`), for a reader to fill in.
PLACEHOLDER = "/path/to/"


def local_roots() -> list[Path]:
    """Folders whose absolute paths are rewritten relative to themselves: the working directory and the project."""
    roots = [Path.cwd(), PROJECT]
    return [r for r in roots if len(r.parts) > 1]


def _scrub_path(match: re.Match) -> str:
    """An absolute path becomes relative to the project (if inside it) or its base name."""
    raw = match.group(0)
    path = Path(os.path.expanduser(raw))
    for root in local_roots():
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return path.name or "<local path>"


def _placeholder_path(match: re.Match) -> str:
    """An absolute path inside the checkout becomes relative to it; any other one `/path/to/<its name>`."""
    path = Path(os.path.expanduser(match.group(0)))
    for root in (r for r in local_roots() if (r / "recipes").is_dir()):  # a checkout, as Reproduce assumes
        try:
            return str(path.resolve().relative_to(root.resolve()))
        except ValueError:
            continue
    return PLACEHOLDER + (path.name or "...")


def runnable_command(command: str) -> str:
    """A recorded command line as a card's Reproduce section shows it: tokens redacted, the project's own
    files relative to its root, and every other local path a `/path/to/<name>` placeholder to fill in
    (a bare name would not run)."""
    return ABS_PATH_RE.sub(_placeholder_path, TOKEN_RE.sub("<redacted>", command))


def placeholder_paths(text: str) -> str:
    """Text that will be published (a results table's data line, a command to reproduce it) with every
    absolute local path a placeholder a reader fills in (`/path/to/cifar10`), or relative to the checkout."""
    return runnable_command(text)


def scrub(obj: Any) -> Any:
    """Drop secrets and rewrite absolute local paths in a JSON-like object, so it can be published."""
    if isinstance(obj, dict):
        return {k: scrub(v) for k, v in obj.items() if str(k).lower() not in SECRET_KEYS}
    if isinstance(obj, list):
        return [scrub(v) for v in obj]
    if isinstance(obj, str):
        return ABS_PATH_RE.sub(_scrub_path, TOKEN_RE.sub("<redacted>", obj))
    return obj


def is_hub_id(name: Any) -> bool:
    """`org/name` that is not also a local path."""
    return isinstance(name, str) and bool(HUB_ID_RE.match(name)) and not Path(name).exists()
