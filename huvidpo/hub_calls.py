"""How this project talks to the Hub: a timeout on every request, and no token in any text shown or logged.

What is unusual here:
- ``huggingface_hub`` sends every request through one shared ``httpx`` client built without a timeout, so a Hub
  endpoint that accepts a connection and never answers hangs the caller forever (a vote sync, a push, the
  shutdown that waits for them). :func:`use_hub_timeouts` installs a client factory (``set_client_factory``, the
  library's own hook) whose client has a timeout; every Hub call of the process then fails in bounded time.
- An error body from the Hub (or a proxy) may echo the request's ``Authorization`` header. :func:`scrub_tokens`
  is the one helper that removes tokens from a text before it is shown or logged: the tokens this process
  knows, and anything shaped like a Hub token or a bearer credential.
- :func:`read_model_json` reads one config of a model folder or Hub repo (its ``model_index.json`` names its
  family) without loading anything, so the studio knows the family's settings while it builds its page.
- Standard library and ``huggingface_hub`` only (no torch).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import threading
from pathlib import Path

from huggingface_hub import get_token, hf_hub_download, set_client_factory
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
)
from huggingface_hub.utils._http import default_client_factory

from .locations import is_hub_id

HUB_TIMEOUT_ENV = "HUVIDPO_HUB_TIMEOUT"
DEFAULT_HUB_TIMEOUT = 60.0  # seconds without progress before a Hub request fails
HUB_CONNECT_TIMEOUT = 10.0
TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
HIDDEN = "***"
# hf_... tokens, and the value after "Bearer" or an Authorization header, however the body quotes it
TOKEN_PATTERNS = (
    re.compile(r"\bhf_[A-Za-z0-9]{30,}"),  # a Hub token is hf_ and 34 letters or digits
    re.compile(r"(?i)(bearer\s+)[^\s'\",}]+"),
    re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?!bearer\s)[^\s'\",}]+"),
)

_installed_timeout: float | None = None
_install_lock = threading.Lock()


def hub_timeout() -> float:
    """Seconds a Hub request may go without progress: ``$HUVIDPO_HUB_TIMEOUT`` or 60."""
    try:
        value = float(os.environ.get(HUB_TIMEOUT_ENV, DEFAULT_HUB_TIMEOUT))
    except ValueError:
        raise ValueError(f"{HUB_TIMEOUT_ENV} must be a number of seconds, got {os.environ[HUB_TIMEOUT_ENV]!r}.") from None
    if not value > 0:
        raise ValueError(f"{HUB_TIMEOUT_ENV} must be positive, got {value}.")
    return value


def use_hub_timeouts(seconds: float | None = None) -> float:
    """Give every Hub request of this process a timeout (``seconds``; None: the one installed, else
    :func:`hub_timeout`); returns it. Idempotent; a new value replaces the shared client."""
    global _installed_timeout
    with _install_lock:
        if seconds is None:
            seconds = _installed_timeout if _installed_timeout is not None else hub_timeout()
        seconds = float(seconds)
        if _installed_timeout != seconds:

            def client_factory():
                import httpx2

                client = default_client_factory()
                client.timeout = httpx2.Timeout(seconds, connect=min(seconds, HUB_CONNECT_TIMEOUT))
                return client

            set_client_factory(client_factory)
            _installed_timeout = seconds
    return seconds


def scrub_tokens(text: str, *tokens: str | None) -> str:
    """``text`` with every Hub token replaced by ``***``: ``tokens``, the environment's and the login's, and
    anything shaped like a token or a bearer credential."""
    known = {token for token in (*tokens, *(os.environ.get(name) for name in TOKEN_ENV_VARS)) if isinstance(token, str) and token}
    try:
        login = get_token()
    except Exception:  # noqa: BLE001 - an unreadable token file must not stop an error from being reported
        login = None
    if login:
        known.add(login)
    for token in sorted(known, key=len, reverse=True):
        text = text.replace(token, HIDDEN)
    for pattern in TOKEN_PATTERNS:
        text = pattern.sub(lambda match: (match.group(1) if match.groups() else "") + HIDDEN, text)
    return text


# ---------------------------------------------------------------------------------------------- reading a model's files

SD15_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"


class ModelLoadError(ValueError):
    """A model could not be found or read; the message says what to do."""


def _network_errors() -> tuple[type[BaseException], ...]:
    """What huggingface_hub raises when the Hub cannot be reached: its offline mode, and the connection errors of
    the HTTP client it is built on (httpx, or httpx2 in recent releases), which it lets through (e.g. from
    ``model_info``, which diffusers calls to find a LoRA's weight file)."""
    errors: list[type[BaseException]] = [OfflineModeIsEnabled, ConnectionError, TimeoutError]
    for client in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(client).TransportError)
        except ImportError:
            continue
    return tuple(errors)


NETWORK_ERRORS = _network_errors()


def offline_message(model: str) -> str:
    return (
        f"No network: could not load '{model}': it is not a local folder and is not in the Hugging Face cache, and the Hub "
        "could not be reached. Download it on a machine with a network (`hf download "
        f"{model}`), point to a local folder, or use the embedded default (leave the model empty)."
    )


def read_model_json(model: str, filename: str) -> dict | None:
    """``filename`` of a local folder or a Hub repo as a dict; None when the repo has no such file."""
    use_hub_timeouts()  # the first Hub call of any load: none of them may hang on a stalled endpoint
    path = Path(model).expanduser()
    if not is_hub_id(model):
        if not path.is_dir():
            raise ModelLoadError(f"No model folder at {path}: check the path, or give a Hub id like '{SD15_ID}'.")
        file = path / filename
        return json.loads(file.read_text()) if file.is_file() else None
    try:
        return json.loads(Path(hf_hub_download(model, filename)).read_text())
    except LocalEntryNotFoundError as err:  # offline and not cached (a subclass of EntryNotFoundError)
        raise ModelLoadError(offline_message(model)) from err
    except EntryNotFoundError:
        return None
    except RepositoryNotFoundError as err:
        raise ModelLoadError(f"'{model}' is neither a local folder nor a model repo on the Hub.") from err
    except (HfHubHTTPError, OSError, ValueError, *NETWORK_ERRORS) as err:
        raise ModelLoadError(offline_message(model)) from err
