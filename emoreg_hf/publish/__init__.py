"""Publishing run folders: model cards (context + rendering from the shipped templates), plots, the Hub
export (allow-list, scrubbing, checks) and the push. Everything is read through the run record."""

from .card import CARD_NAME, build_model_card, card_context, write_model_card
from .export import EXPORT_FILES, check_export, export_for_hub
from .hub import CardExistsError, HubCredentialsError, HubPushError, HubUnreachableError
from .plots import make_plots
from .push import push_from_training_args, push_to_hub
from .results import reported_metrics
from .runs import RunFolder, load_run_folder
from .scrub import scrub

__all__ = [
    "CARD_NAME",
    "EXPORT_FILES",
    "CardExistsError",
    "HubCredentialsError",
    "HubPushError",
    "HubUnreachableError",
    "RunFolder",
    "build_model_card",
    "card_context",
    "check_export",
    "export_for_hub",
    "load_run_folder",
    "make_plots",
    "push_from_training_args",
    "push_to_hub",
    "reported_metrics",
    "scrub",
    "write_model_card",
]
