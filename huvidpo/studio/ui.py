"""What the tab modules share: the page every tab wires to, and the decorator that turns a function into an event
handler (errors a user can cause shown as messages, the user of the request resolved once).

What is unusual here:
- ``handler`` rewrites the signature of a callback that takes ``user: User``: that parameter becomes the name box's
  input (``labeler_name``, where the tab passes the name box) and a trailing ``profile: gr.OAuthProfile | None``
  lets Gradio inject the Hugging Face sign-in. Gradio reads the signature (the API's parameter names, which
  parameters it fills itself) and the annotations, so the handler carries both; the callback only sees a ``User``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import traceback
import typing
from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from huvidpo.hub_calls import scrub_tokens
from huvidpo.studio.access import AccessError, User, resolve_user
from huvidpo.studio.config import StudioConfig

logger = logging.getLogger("huvidpo.app")


@dataclass
class Page:
    """What every tab wires to: the settings, the Blocks, the name box and the per-session state."""

    config: StudioConfig
    demo: gr.Blocks
    name: gr.Textbox
    state: gr.State


def handler(config: StudioConfig) -> Callable[[Callable], Callable]:
    """Decorate a callback as an event handler: ``ValueError``/``OSError`` become a message (``AccessError`` titled
    "Not allowed"), anything else a short notice with the traceback in the log; a ``user: User`` parameter is filled
    with the user of the request, from the sign-in profile and the name box passed in its place."""

    def decorate(fn: Callable) -> Callable:
        hints = typing.get_type_hints(fn)
        params = [parameter.replace(annotation=hints.get(name, parameter.annotation))
                  for name, parameter in inspect.signature(fn).parameters.items()]
        takes_user = "user" in hints and hints["user"] is User
        if takes_user:
            index = [parameter.name for parameter in params].index("user")
            follows_defaults = any(parameter.default is not inspect.Parameter.empty for parameter in params[:index])
            name_box = inspect.Parameter(
                "labeler_name", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                default=None if follows_defaults else inspect.Parameter.empty,
            )
            profile = inspect.Parameter("profile", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None,
                                        annotation=gr.OAuthProfile | None)
            params = [*params[:index], name_box, *params[index + 1:], profile]
        signature = inspect.Signature(params)

        @functools.wraps(fn)
        def event(*args: Any, **kwargs: Any) -> Any:
            values = signature.bind(*args, **kwargs)
            values.apply_defaults()
            arguments = dict(values.arguments)
            try:
                if takes_user:
                    profile_value, typed_name = arguments.pop("profile"), arguments.pop("labeler_name")
                    arguments["user"] = resolve_user(config, getattr(profile_value, "username", None), typed_name)
                return fn(**arguments)
            except gr.Error:
                raise
            except AccessError as err:
                raise gr.Error(str(err), title="Not allowed", print_exception=False) from None
            except OSError as err:  # a full, read-only or missing disk: the user is told, the log keeps the context
                who = getattr(arguments.get("user"), "name", "") or "a visitor"
                logger.error("%s by %s failed on the server's disk: %s (%s)", fn.__name__, who, scrub_tokens(str(err)),
                             type(err).__name__)
                raise gr.Error(scrub_tokens(disk_message(err, config)), print_exception=False) from None
            except ValueError as err:  # a Hub error in it may echo the token
                raise gr.Error(scrub_tokens(str(err)), print_exception=False) from None
            except Exception as err:  # noqa: BLE001 - never show a traceback to a visitor
                logger.error("Unexpected error in %s:\n%s", fn.__name__, scrub_tokens("".join(traceback.format_exception(err))))
                raise gr.Error(
                    f"Something went wrong on the server ({type(err).__name__}). Try again; if it persists, tell the maintainers.",
                    print_exception=False,
                ) from None

        event.__signature__ = signature
        event.__annotations__ = {parameter.name: parameter.annotation for parameter in params
                                 if parameter.annotation is not inspect.Parameter.empty}
        return event

    return decorate


def checked_by_handler(component: gr.components.Component) -> gr.components.Component:
    """A number box or slider whose value reaches the handler as sent. Gradio's own check would round 2.5 to 2
    silently, and refuse an out-of-range value with a message that names no field (and a traceback in the server
    log); the handler checks it instead (:func:`whole`, :func:`number`, the settings' ranges) and says which field
    and what it allows. (Set on the instance: a subclass of a Gradio component writes a ``.pyi`` beside its module.
    An update that returns a new component gives the session a copy with Gradio's own check: such updates must not
    set ``minimum``, ``maximum`` or ``precision``.)"""
    component.preprocess = lambda payload: payload
    return component


def image_input(**kwargs: Any) -> gr.Image:
    """``gr.Image`` whose upload that is not an image gets a message naming the field, not a generic error."""
    image = gr.Image(**kwargs)
    preprocess = image.preprocess

    def checked(payload: Any) -> Any:
        try:
            return preprocess(payload)
        except Exception:  # noqa: BLE001 - PIL raises several kinds for a file that is not an image
            raise gr.Error(f"{image.label or 'The image'}: the file is not an image; upload a PNG, JPEG or WebP.",
                           print_exception=False) from None

    image.preprocess = checked
    return image


def disk_message(err: OSError, config: StudioConfig) -> str:
    """What a user reads of a disk error: its reason and the file relative to the data dir, never a server path."""
    reason = err.strerror or str(err)
    where = f" ({config.shown_path(err.filename)})" if err.filename else ""
    return f"The server could not read or write its data{where}: {reason}. Try again later, or tell the maintainers."


MAX_REFERENCE_CHARS = 300  # a LoRA, model or dataset reference, a run id, a vote token or choice


def text(value: Any, name: str, max_chars: int | None = MAX_REFERENCE_CHARS) -> str:
    """A text box's value stripped (None: empty); anything but text, or text longer than ``max_chars`` (None: the
    caller checks), is refused, naming ``name``."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}.")
    if max_chars is not None and len(value) > max_chars:
        raise ValueError(f"{name} is {len(value)} characters long; keep it to {max_chars}.")
    return value.strip()


def flag(value: Any, name: str) -> bool | None:
    """A checkbox's value (None stays None); anything but true or false is refused, naming ``name``."""
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be true or false, got {value!r}.")


def number(value: Any, name: str) -> float | None:
    """A number from a number box or an API call (None stays None); text, NaN or infinity is refused, naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    return float(value)


def whole(value: Any, name: str, default: int | None = None) -> int | None:
    """An integer from a number box or an API call (``2.0`` is 2; ``2.5`` is refused, naming ``name``);
    None gives ``default``."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value != int(value):
        raise ValueError(f"{name} must be an integer, got {value!r}.")
    return int(value)
