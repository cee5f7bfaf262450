"""Jinja model-card templates (rendered by `emoreg_hf.hub`); installed as the `emoreg_hf.model_cards` package."""
