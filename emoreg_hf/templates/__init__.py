"""Jinja templates shipped inside the package: the model cards and the ablation report."""

from __future__ import annotations

from importlib import resources


def read_template(name: str) -> str:
    """The text of a shipped template (`emoreg_card.md`, `affect_card.md`, `ablation_results.md`)."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")
