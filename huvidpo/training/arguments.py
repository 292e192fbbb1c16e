"""The command lines' parser: transformers' ``HfArgumentParser`` over the settings dataclasses, plus ``--config``.

What is unusual here:
- Field metadata holds more than argparse knows (a number's ``min`` / ``max``, ``secret``): only argparse's own
  keys reach ``add_argument``, the range is appended to the help text, and the dataclass's ``__post_init__``
  checks it. The parser works on copies of the fields, so the dataclasses keep their declared annotations.
- ``--config file.yaml`` becomes the parser's defaults: flags override the file, the file overrides the
  dataclass defaults, and file values go through the same argparse types as flags (YAML 1.1 reads ``1e-4``
  as text; argparse's ``float`` reads it as a number).
- A setting that defaults to true also takes ``--no-<name>`` with the field's own underscores
  (``--no-cache_latents``), the spelling of this project's earlier flags, beside transformers' two.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from transformers import HfArgumentParser

ARGPARSE_KEYS = ("help", "aliases", "choices", "metavar", "nargs", "const")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the help of each flag, and the description (the module's examples) as written."""


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
