"""Config dataclasses from keyword arguments (CLI flags, YAML/JSON files, lm-eval model_args).

Shared by the reward backends and the teachers.
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import MISSING, fields
from typing import Any

#: Environment variable holding the reward server's API key (server and ``remote`` client).
API_KEY_ENV = "OPENRLHF_REWARD_API_KEY"


def build_config(
    config_class: type, kwargs: dict[str, Any], backend: str, kind: str = "backend"
) -> Any:
    """``config_class(**kwargs)``; an unknown key is a TypeError naming it and the known keys.

    String values (lm-eval ``--model_args`` and CLI flags pass strings) are converted to the
    field's declared type: bool, int, float, None, and list/dict written as JSON.
    """
    known = {f.name: f for f in fields(config_class)}
    if unknown := sorted(set(kwargs) - set(known)):
        raise TypeError(
            f"{kind} {backend!r}: unknown option(s) {', '.join(map(repr, unknown))}; "
            f"known options: {', '.join(sorted(known))}"
        )
    values = coerce_fields(config_class, kwargs, f"{kind} {backend!r}")
    missing = [
        n for n, f in known.items()
        if n not in values and f.default is MISSING and f.default_factory is MISSING
    ]
    if missing:
        raise TypeError(f"{kind} {backend!r}: missing required option(s) {missing}")
    return config_class(**values)


def _coerce(
    owner: str, name: str, value: Any, annotation: Any, *, strict: bool = False,
    error: type[Exception] = ValueError,
) -> Any:
    """``value`` as the field type ``annotation`` (a typing object, not a string).

    Strings (CLI flags, lm-eval ``--model_args``, environment variables) are converted: bool
    from true/false/yes/no/on/off/1/0, int, float, None from none/null for optional fields,
    list/dict as JSON (a plain string where a list of strings is expected is a one-item list).
    Other values pass through (an int where a float is declared becomes a float, a number
    where a string is declared becomes its text: lm-eval's model_args parser turns digits into
    numbers), except that ``strict`` (config files) checks them against the type (``null`` for
    a required field, a string for a number, ...). ``error`` is raised naming owner and option.
    """
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    optional = union and type(None) in typing.get_args(annotation)
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)] if union else [annotation]
    origins = [typing.get_origin(t) or t for t in kinds]

    def fail(expected: str) -> Exception:
        return error(f"{owner}: option {name!r} expects {expected}, got {value!r}")

    if value is None:
        if strict and not optional and annotation is not Any:
            raise fail("a value (it may not be null)")
        return None
    if isinstance(value, str):
        if optional and value.strip().lower() in ("none", "null"):
            return None
        if str in origins or Any in origins:
            return value
    elif not strict or Any in origins:
        if isinstance(value, int) and not isinstance(value, bool):
            if float in origins and int not in origins:
                return float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and origins == [str]:
            return str(value)
        return value
    for t, origin in zip(kinds, origins):
        if origin is bool:
            if isinstance(value, bool):
                return value
            low = value.strip().lower() if isinstance(value, str) else None
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise fail("true or false")
        if origin in (int, float):
            what = "an integer" if origin is int else "a number"
            if isinstance(value, bool) or (origin is int and isinstance(value, float)):
                raise fail(what)
            if isinstance(value, (int, float)):
                return origin(value)
            try:
                return origin(value)
            except (TypeError, ValueError):
                raise fail(what) from None
        if origin in (list, dict):
            elem = typing.get_args(t)
            if isinstance(value, str):
                try:
                    parsed = json.loads(value)
                except json.JSONDecodeError:
                    parsed = None
                if isinstance(parsed, origin):
                    value = parsed
                elif origin is list and elem == (str,):
                    value = [value]  # one item: `--end-markers "</answer>"`
                else:
                    raise fail(f"a JSON {origin.__name__}")
            if not isinstance(value, origin):
                raise fail(f"a JSON {origin.__name__}")
            if origin is list and elem == (str,) and not all(isinstance(v, str) for v in value):
                raise fail("a list of strings")
            return value
    if str in origins and not isinstance(value, str):
        raise fail("a string")
    return value


def coerce_fields(
    config_class: type, values: Mapping[str, Any], owner: str, *, strict: bool = False,
    error: type[Exception] = ValueError,
) -> dict[str, Any]:
    """:func:`_coerce` applied to each of ``values`` with its field's declared type."""
    hints = typing.get_type_hints(config_class)
    return {k: _coerce(owner, k, v, hints.get(k, Any), strict=strict, error=error) for k, v in values.items()}


def parse_key_value(text: str, flag: str, error: type[Exception] = ValueError) -> tuple[str, Any]:
    """``KEY=VALUE`` (a repeatable option such as ``--backend-arg``) -> ``(key, value)``: the value
    read as JSON when it is JSON (numbers, booleans, lists, objects), else kept as text; dashes
    in the key become underscores (``max-length`` = ``max_length``)."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise error(f"{flag} expects KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def add_dataclass_flags(
    parser: argparse.ArgumentParser | Any,
    config_class: type,
    *,
    skip: Collection[str] = (),
    required: Collection[str] = (),
    choices: Mapping[str, Sequence[str]] | None = None,
    suppress_defaults: bool = False,
) -> None:
    """A ``--field-name`` flag per field of ``config_class`` (a parser or argument group),
    its help from the field's ``help`` metadata.

    bool -> ``--x/--no-x``; list -> a repeatable flag; int/float/str (optional or not) -> typed
    flags. ``suppress_defaults`` leaves a flag that was not given out of the namespace (so that
    only given flags override a config file); otherwise the field default is the flag default.
    Read the values back with :func:`values_from_args`.
    """
    hints = typing.get_type_hints(config_class)
    choices = choices or {}
    for f in fields(config_class):
        if f.name in skip:
            continue
        ann = hints.get(f.name, str)
        args = [a for a in typing.get_args(ann) if a is not type(None)] if typing.get_origin(ann) in (
            typing.Union, types.UnionType) else [ann]
        base = typing.get_origin(args[0]) or args[0] if len(args) == 1 else str
        default = f.default if f.default is not MISSING else (
            f.default_factory() if f.default_factory is not MISSING else None)  # type: ignore[misc]
        help_text = f.metadata.get("help", "")
        if default not in (None, "", []) and f.name not in required and "default" not in help_text:
            help_text += f" (default: {default})"
        kwargs: dict[str, Any] = {"dest": f.name, "help": help_text}
        kwargs["default"] = argparse.SUPPRESS if suppress_defaults else default
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif base is list:
            kwargs.update(action="append", metavar="TEXT", help=help_text + "; repeatable")
        else:
            kwargs["type"] = base if base in (int, float) else str
            if f.name in choices:
                kwargs["choices"] = choices[f.name]
            if f.name in required:
                kwargs.pop("default")
                kwargs["required"] = True
        parser.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def values_from_args(args: argparse.Namespace, config_class: type, skip: Collection[str] = ()) -> dict[str, Any]:
    """The field values that :func:`add_dataclass_flags` put in ``args`` (given flags only when
    defaults were suppressed)."""
    return {f.name: getattr(args, f.name) for f in fields(config_class) if f.name not in skip and hasattr(args, f.name)}
