"""Settings: dataclass fields that carry their help, range and choices, the check of values against them, and the
command lines' parser over those dataclasses. The one home of these rules for every settings class of the project
(generation, both training stages, evaluation) and for every place that reads them (CLIs, the studio's inputs).

What is unusual here:
- A field's metadata is the one home of what a setting allows: its help text, a number's range (``min`` /
  ``max``, both inclusive; ``max`` None: unbounded) and a text's ``choices``. :func:`check_settings` checks every
  value against them and raises a ``ValueError`` that names the field; a caller may narrow a range (the studio's
  limits on frames and steps) without restating it.
- Field metadata holds more than argparse knows: only argparse's own keys reach ``add_argument``, the range is
  appended to the help text, and the dataclass's ``__post_init__`` checks it. The parser works on copies of the
  fields, so the dataclasses keep their declared annotations.
- ``--config file.yaml`` becomes the parser's defaults: flags override the file, the file overrides the
  dataclass defaults, and file values go through the same argparse types as flags (YAML 1.1 reads ``1e-4``
  as text; argparse's ``float`` reads it as a number).
- A setting that defaults to true also takes ``--no-<name>`` with the field's own underscores
  (``--no-cache_latents``), the spelling of this project's earlier flags, beside transformers' two.
- No torch here; transformers is imported only when a parser is built.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
import re
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, Mapping

import yaml

MAX_SEED = 2**32 - 1


def setting(default: Any = dataclasses.MISSING, help: str = "", *, min: float | None = None, max: float | None = None,
            choices: tuple[str, ...] | None = None, default_factory: Any = dataclasses.MISSING, **metadata: Any) -> Any:
    """A dataclass field whose metadata holds its help text, range and choices (and any argparse extras)."""
    metadata = {"help": help, **metadata}
    if min is not None:
        metadata.update(min=min, max=max)
    if choices is not None:
        metadata["choices"] = tuple(choices)
    return field(default=default, default_factory=default_factory, metadata=metadata)


def check_settings(settings: Any, limits: Mapping[str, tuple[float, float | None]] | None = None) -> None:
    """Raise a ``ValueError`` naming the first field whose value is outside its metadata's range or choices.

    A field with a range must hold a number of its declared kind (an ``int`` field an integer, never a bool,
    a float or NaN); ``None`` passes where the field is optional. ``limits`` narrows the range of some fields
    (``{name: (low, high)}``), e.g. the work one visitor may ask of a public app.
    """
    hints = typing.get_type_hints(type(settings))
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        kinds = typing.get_args(hints[f.name]) or (hints[f.name],)
        if value is None and type(None) in kinds:
            continue
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{f.name} must be one of {list(choices)}, got {value!r}.")
        if "min" not in f.metadata and f.name not in (limits or {}):
            continue
        low, high = (limits or {}).get(f.name) or (f.metadata["min"], f.metadata.get("max"))
        integer = int in kinds
        number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if not number or math.isnan(value) or not (low <= value and (high is None or value <= high)):
            kind = "an integer" if integer else "a number"
            allowed = f"from {_number(low)} to {_number(high)}" if high is not None else f"of at least {_number(low)}"
            default = f" (default {f.default!r})" if f.default not in (dataclasses.MISSING, None) else ""
            raise ValueError(f"{f.name} must be {kind} {allowed}{default}, got {value!r}.")


def parse_resolution(value: str | int | None, name: str = "resolution") -> tuple[int, int] | None:
    """A size setting, 'SIZE' or 'HEIGHTxWIDTH' in pixels (multiples of 8), as (height, width); None or '' is None
    (the model's native size). A ValueError names the setting ``name``."""
    if value in (None, ""):
        return None
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", str(value))
    if not match:
        raise ValueError(f"{name} must be 'SIZE' or 'HEIGHTxWIDTH' (e.g. 320x512), got {value!r}.")
    height = int(match.group(1))
    width = int(match.group(2) or height)
    if height < 8 or width < 8 or height % 8 or width % 8:
        raise ValueError(f"{name} must be multiples of 8 pixels, got {height}x{width}.")
    return height, width


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


ARGPARSE_KEYS = ("help", "aliases", "choices", "metavar", "nargs", "const")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help of each flag, and the description (the module's examples) as written."""


def read_settings_file(path: str | Path, dataclass_types: list[type]) -> dict[str, Any]:
    """The mapping of settings in a YAML file, every key a field of ``dataclass_types``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config: no file at {path}.")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ValueError(f"--config: {path} is not valid YAML: {err}") from err
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"--config: {path} must hold a mapping of settings, got {type(values).__name__}.")
    names = {f.name for dtype in dataclass_types for f in dataclasses.fields(dtype) if f.init}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"--config: unknown settings {unknown} in {path}; valid ones are {sorted(names)}.")
    return values


def settings_without(dtype: type, *names: str) -> type:
    """A dataclass with ``dtype``'s fields (types, defaults, metadata) except ``names``: for a command line that
    sets those in its own way."""
    hints = typing.get_type_hints(dtype)
    kept = []
    for f in dataclasses.fields(dtype):
        if f.name not in names:
            kept.append((f.name, hints[f.name], dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)))
    return dataclasses.make_dataclass(f"{dtype.__name__}Flags", kept)


def __getattr__(name: str) -> Any:
    """``SettingsParser`` is built on first use: it subclasses transformers' ``HfArgumentParser``, and importing
    transformers costs seconds that the studio's page and the settings' readers should not pay."""
    if name != "SettingsParser":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from transformers import HfArgumentParser

    class SettingsParser(HfArgumentParser):
        """``HfArgumentParser`` with ``--config`` and ranges from field metadata; :meth:`parse` returns the settings."""

        def __init__(self, dataclass_types: Any, **kwargs: Any) -> None:
            kwargs.setdefault("formatter_class", HelpFormatter)
            super().__init__(dataclass_types, **kwargs)
            self.add_argument("--config", default=None, metavar="YAML", help="A YAML file of settings; flags override it.")

        def _add_dataclass_arguments(self, dtype: type) -> None:
            hints = typing.get_type_hints(dtype)
            for original in dataclasses.fields(dtype):
                if not original.init:
                    continue
                shown = copy.copy(original)
                shown.type = hints[original.name]
                metadata = {key: value for key, value in original.metadata.items() if key in ARGPARSE_KEYS}
                if "min" in original.metadata:
                    metadata["help"] = f"{metadata.get('help', '')} From {original.metadata['min']} to {original.metadata['max']}."
                shown.metadata = types.MappingProxyType(metadata)
                self._parse_dataclass_field(self, shown)
                if original.default is True:  # HfArgumentParser added --no_<name>: say what it does, not the field's help
                    complement = self._option_string_actions[f"--no_{original.name}"]
                    complement.help, complement.default = f"Turn {original.name} off.", argparse.SUPPRESS
                    if "_" in original.name:
                        self.add_argument(f"--no-{original.name}", action="store_false", dest=original.name,
                                          default=argparse.SUPPRESS, help=argparse.SUPPRESS)

        def parse(self, args: list[str] | None = None) -> tuple[Any, ...]:
            """One settings object per dataclass, then a namespace of the other arguments; exits with the reason
            (status 2) when a value is out of range, as argparse does for a malformed flag."""
            pre = argparse.ArgumentParser(add_help=False)
            pre.add_argument("--config", default=None)
            config_file = pre.parse_known_args(args)[0].config
            try:
                if config_file is not None:
                    values = read_settings_file(config_file, self.dataclass_types)
                    for action in self._actions:
                        if action.dest in values:
                            action.required = False
                    self.set_defaults(**values)
                return self.parse_args_into_dataclasses(args, look_for_args_file=False)
            except ValueError as err:
                self.error(str(err))

    globals()["SettingsParser"] = SettingsParser
    return SettingsParser
