"""The Jinja templates of the model cards and the ablation report. Their one home is the top-level
`model_cards/` folder; the wheel carries them as package data in `emoreg_hf/model_cards/`
(pyproject.toml maps the folder there), so an installed package renders cards as a checkout does."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

TEMPLATES = ("affect_card.md", "emoreg_card.md", "ablation_results.md", "card_blocks.md")
# The blocks both card templates share (macros only), prepended to each when it is read: ModelCard.from_template
# renders a string, with no loader for `{% include %}` / `{% import %}`.
CARD_BLOCKS = "card_blocks.md"
CARD_TEMPLATES = ("affect_card.md", "emoreg_card.md")


def template_dir():
    """Where the templates are: inside the installed package, else the checkout's `model_cards/`."""
    installed = resources.files(__package__).joinpath("model_cards")
    if installed.joinpath(TEMPLATES[0]).is_file():
        return installed
    checkout = Path(__file__).resolve().parent.parent / "model_cards"
    if checkout.joinpath(TEMPLATES[0]).is_file():
        return checkout
    raise FileNotFoundError(
        f"The card templates are missing: neither {installed} (an installed emoreg-hf) nor {checkout} "
        "(a checkout) holds them; reinstall emoreg-hf."
    )


def read_template(name: str) -> str:
    """The text of a shipped template (`emoreg_card.md`, `affect_card.md`, `ablation_results.md`); a card
    template comes with the shared blocks (`card_blocks.md`) in front."""
    folder = template_dir()
    text = folder.joinpath(name).read_text(encoding="utf-8")
    if name in CARD_TEMPLATES:
        text = folder.joinpath(CARD_BLOCKS).read_text(encoding="utf-8") + text
    return text
