"""EmoReg's influence modes: how emotion enters the emotional response z_E = W_E · influence(h_T, h_A, e).
Each mode keeps together the layers it adds to the model (the emotional head W_E among them), their
initialisation and the influenced features; `INFLUENCES` lists them by name, and `EmoRegConfig` accepts
exactly those names.

This file travels to the Hub as remote code with `modeling_emoreg.py`; it imports only torch and
transformers' initialisation helpers (light: the configuration reads the names from here at parse time).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import initialization as init


class InfluenceMode:
    """One way for emotion to enter the emotional response, declared in one place: the layers it adds to the
    model (`build`: `model.film`, None where the mode has none, and `model.emotional_head`), their
    initialisation (`init`) and the features the emotional head reads (`influence`). A new mode is one
    subclass added to `INFLUENCES`; `EmoRegConfig` accepts exactly the names listed there."""

    description: str = ""

    def build(self, model: nn.Module, d_task: int, d_affect: int, n_emotions: int, n_labels: int) -> None:
        raise NotImplementedError

    def init(self, model: nn.Module, module: nn.Module) -> bool:
        """Initialise `module` if it is this mode's own (the emotional head is a plain Linear); True when it was."""
        return False

    def influence(
        self, model: nn.Module, h_task: torch.Tensor, affect: torch.Tensor, emotion: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError


class ConcatInfluence(InfluenceMode):
    description = "[h_T; h_A; e]"

    def build(self, model, d_task, d_affect, n_emotions, n_labels):
        model.film = None
        model.emotional_head = nn.Linear(d_task + d_affect + n_emotions, n_labels)

    def influence(self, model, h_task, affect, emotion):
        return torch.cat([h_task, affect, emotion], dim=-1)


class FilmInfluence(InfluenceMode):
    description = "h_T ⊙ (1 + γ(e, h_A)) + β(e, h_A)"

    def build(self, model, d_task, d_affect, n_emotions, n_labels):
        model.film = nn.Linear(n_emotions + d_affect, 2 * d_task)
        model.emotional_head = nn.Linear(d_task, n_labels)

    def init(self, model, module):
        if module is not model.film:
            return False
        init.zeros_(module.weight)  # FiLM starts as the identity: γ = β = 0
        init.zeros_(module.bias)
        return True

    def influence(self, model, h_task, affect, emotion):
        gamma, beta = model.film(torch.cat([emotion, affect], dim=-1)).chunk(2, dim=-1)
        return h_task * (1 + gamma) + beta


#: The influence modes by name (`EmoRegConfig.influence`).
INFLUENCES: dict[str, InfluenceMode] = {
    "concat": ConcatInfluence(),
    "film": FilmInfluence(),
}


__all__ = ["INFLUENCES", "InfluenceMode"]
