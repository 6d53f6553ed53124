"""Command-line options made from the typed settings (`ilearn.config`): help text and validation written once.

`add_setting(parser, "model.backend", "--model")` adds an option whose type, default and help come from the
field of `Config` it names (the help is the docstring written under the field); `--set SECTION.FIELD=VALUE`
reaches every other setting. `overrides(args)` collects what was given, and `apply(config, args)` returns the
settings with it applied, validated by the settings classes themselves (an unknown name or a bad value is an
`InvalidInput` with a clear message).
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import textwrap
import typing
from dataclasses import MISSING, fields, is_dataclass
from functools import cache
from typing import Any

from ilearn.config import Config
from ilearn.errors import ILearnError, InvalidInput

DEST_PREFIX = "setting:"
"""argparse dest of a setting option: the prefix, then the setting's dotted path."""


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written right under each field of a settings dataclass, by field name."""
    docs: dict[str, str] = {}
    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _field(path: str) -> tuple[type, Any, Any]:
    """(owner class, field, default) of a dotted setting path such as "learn.max_steps"."""
    cls: type = Config
    *sections, name = path.split(".")
    for section in sections:
        match = {f.name: f for f in fields(cls)}.get(section)
        if match is None or match.default_factory is MISSING or not is_dataclass(match.default_factory):
            raise InvalidInput(f"unknown setting {path!r}: {section!r} is not a section of the settings")
        cls = match.default_factory
    match = {f.name: f for f in fields(cls)}.get(name)
    if match is None or (match.default_factory is not MISSING and is_dataclass(match.default_factory)):
        known = ", ".join(f.name for f in fields(cls))
        raise InvalidInput(f"unknown setting {path!r}; {'.'.join(sections) or 'the settings'} has: {known}")
    default = match.default if match.default is not MISSING else match.default_factory()
    return cls, match, default


def _summary(doc: str) -> str:
    """The first paragraph of a field's docstring, on one line (argparse rewraps it)."""
    return " ".join(doc.split("\n\n")[0].split())


def _converter(cls: type, name: str, path: str):
    """A function from the command-line text to the field's type, with an error that names the setting."""
    hint = typing.get_type_hints(cls)[name]
    base = typing.get_origin(hint) or hint
    if base is tuple:
        return lambda text: tuple(p.strip() for p in text.split(",") if p.strip())
    if base is bool:
        def to_bool(text: str) -> bool:
            low = text.strip().lower()
            if low not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
                raise argparse.ArgumentTypeError(f"{path} takes true or false, not {text!r}")
            return low in {"true", "1", "yes", "on"}
        return to_bool
    for number in (int, float):
        if base is number:
            def to_number(text: str, number=number) -> Any:
                try:
                    return number(text)
                except ValueError:
                    raise argparse.ArgumentTypeError(f"{path} takes {number.__name__}, not {text!r}") from None
            return to_number
    return str


def add_setting(parser: argparse.ArgumentParser, path: str, *flags: str, help: str | None = None) -> None:
    """An option for the setting `path` (e.g. "model.threads"); flags default to --FIELD-NAME. A true/false
    setting gets a switch that sets the opposite of its default (`retrieval.enabled` -> --no-retrieval)."""
    cls, spec, default = _field(path)
    text = help or _summary(field_docs(cls).get(spec.name, ""))
    dest = DEST_PREFIX + path
    if isinstance(default, bool):
        if not flags:
            raise ValueError(f"name the switch for the true/false setting {path}")
        parser.add_argument(*flags, dest=dest, action="store_const", const=not default, default=None,
                            help=f"turn {'off' if default else 'on'}: {text} (sets {path}={str(not default).lower()})")
        return
    shown = ",".join(default) if isinstance(default, tuple) else default
    parser.add_argument(*(flags or ("--" + spec.name.replace("_", "-"),)), dest=dest, default=None,
                        type=_converter(cls, spec.name, path), metavar=spec.name.upper(),
                        help=f"{text} (default: {shown if shown not in ('', None) else 'none'}; setting {path})")


def add_set_option(parser: argparse.ArgumentParser) -> None:
    """`--set SECTION.FIELD=VALUE`, repeatable: any setting of `ilearn.config` (VALUE as JSON, else as text)."""
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                        help="change any setting of ilearn.config, e.g. --set retrieval.image_weight=0.7 "
                             "--set learn.trainable=vision,projector (repeatable)")


def _parse_set(item: str) -> tuple[str, Any]:
    path, sep, text = item.partition("=")
    path = path.strip()
    if not sep or not path:
        raise InvalidInput(f"--set takes SECTION.FIELD=VALUE, not {item!r}")
    cls, spec, default = _field(path)
    number = default is None and any(t in (int, float) for t in typing.get_args(typing.get_type_hints(cls)[spec.name]))
    if isinstance(default, str) or (default is None and not number and not text.strip().startswith(("{", "["))):
        return path, text
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        try:
            value = _converter(cls, spec.name, path)(text)
        except argparse.ArgumentTypeError as exc:
            raise InvalidInput(str(exc)) from None
    if isinstance(default, tuple) and isinstance(value, str):
        value = tuple(p.strip() for p in value.split(",") if p.strip())
    return path, value


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given on the command line, by dotted path (`--set` items first, named options after)."""
    given: dict[str, Any] = dict(_parse_set(item) for item in getattr(args, "settings", None) or [])
    for dest, value in vars(args).items():
        if dest.startswith(DEST_PREFIX) and value is not None:
            given[dest.removeprefix(DEST_PREFIX)] = value
    return given


def apply(config: Config, given: dict[str, Any]) -> Config:
    """`config` with the dotted-path settings changed; validated by the settings classes."""
    nested: dict[str, Any] = {}
    for path, value in given.items():
        _field(path)
        *sections, name = path.split(".")
        target = nested
        for section in sections:
            target = target.setdefault(section, {})
        target[name] = value
    if not nested:
        return config
    try:
        return Config.from_dict(_merge(config.to_dict(), nested))
    except TypeError as exc:  # a value of the wrong kind that the field's own check did not name
        raise InvalidInput(f"bad setting: {exc}") from None


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        out[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def load_config(args: argparse.Namespace) -> Config:
    """The settings file (or the defaults) with the command line's settings applied and checked."""
    path = getattr(args, "config", None)
    try:
        config = Config.load(path) if path else Config()
    except ILearnError:
        raise
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        from ilearn.memory.lock import os_reason

        reason = os_reason(exc) if isinstance(exc, OSError) else f"not a JSON object of settings ({exc})"
        raise InvalidInput(f"cannot read the settings file {path}: {reason}") from None
    return apply(config, overrides(args))


__all__ = ["load_config", "add_set_option", "add_setting", "apply", "field_docs", "overrides"]
