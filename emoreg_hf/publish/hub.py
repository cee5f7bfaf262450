"""The Hub client as publishing meets it: its errors turned into `HubPushError`s with a message for the user
(no token, a refused token, an existing card, no network, offline mode), the token check and the `HfApi`."""

from __future__ import annotations

import contextlib
import re

REPO_ID_RE = re.compile(
    r"^(?:[A-Za-z0-9][\w.-]*/)?[A-Za-z0-9][\w.-]*$"
)  # `name` pushes to your own namespace


class HubPushError(RuntimeError):
    """A push that cannot go ahead, with a message for the user (recipes print it instead of a traceback)."""


class HubCredentialsError(HubPushError):
    """No usable Hugging Face token, so nothing can be pushed."""


class CardExistsError(HubPushError):
    """The target revision already has a README.md and `overwrite` was not asked for."""


class HubUnreachableError(HubPushError):
    """The Hub could not be reached (offline mode, no network)."""


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors of whichever HTTP client huggingface_hub uses (httpx2 today; httpx or
    requests in other versions)."""
    import importlib

    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests.exceptions", ("ConnectionError", "Timeout")),
        ("urllib3.exceptions", ("HTTPError",)),
    ):
        try:
            loaded = importlib.import_module(module)
        except ImportError:
            continue
        errors += [getattr(loaded, name) for name in names if hasattr(loaded, name)]
    return tuple(errors)


@contextlib.contextmanager
def hub_errors(repo_id: str, *, action: str = "push"):
    """Turn what the Hub client raises into `HubPushError`s with a message: offline mode, a refused token,
    no network (any transport error of the HTTP client)."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    try:
        yield
    except HubPushError:
        raise
    except OfflineModeIsEnabled as error:
        raise HubUnreachableError(
            f"HF_HUB_OFFLINE is set, so nothing was pushed to {repo_id}: unset it (or use --dry_run)."
        ) from error
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            raise HubCredentialsError(
                f"The Hub refused the token for {repo_id} (HTTP {status}): it needs write access to that "
                "namespace. Log in again with `hf auth login` or set HF_TOKEN."
            ) from error
        raise
    except _transport_errors() as error:
        raise HubUnreachableError(
            f"Could not reach the Hub to {action} {repo_id} ({type(error).__name__}); nothing was pushed. Check "
            "the network (or HF_ENDPOINT) and rerun; --dry_run shows what would be uploaded."
        ) from error


def _check_token(api) -> None:
    from huggingface_hub import get_token

    if not (getattr(api, "token", None) or get_token()):
        raise HubCredentialsError(
            "No Hugging Face token found, so nothing was pushed. Log in with `hf auth login` or set HF_TOKEN "
            "(a token with write access to the target namespace), then rerun; `recipes/push.py ... --dry_run` "
            "shows what would be uploaded without a token."
        )


def _hf_api(token: str | None):
    from huggingface_hub import HfApi

    return HfApi(token=token)
