"""Readable config errors: each names the file, the key path and the fix."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Union

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A config failed validation. ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.source = source
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source}: invalid config ({len(self.problems)} problem(s)):\n{lines}")


def format_loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _model_classes(annotation: Any, *, items: bool = False) -> list[type[BaseModel]]:
    """The pydantic models an annotation admits (through Optional, Union, Annotated);
    with ``items``, those its list elements admit instead."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _model_classes(typing.get_args(annotation)[0], items=items)
    if origin in (Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _model_classes(a, items=items)]
    if items:
        if origin in (list, tuple, Sequence):
            return [m for a in typing.get_args(annotation) for m in _model_classes(a)]
        return []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def _list_item_models(annotation: Any) -> list[type[BaseModel]]:
    return _model_classes(annotation, items=True)


def _field_names(model: type[BaseModel]) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
    return names


def unknown_key_message(key: str, allowed: Iterable[str]) -> str:
    allowed = sorted(allowed)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
    return f"unknown key; {hint}"


def unknown_keys(data: Any, model: type[BaseModel], loc: tuple[Any, ...] = ()) -> list[str]:
    """Keys of ``data`` that ``model`` does not declare, recursively.

    For models that, like Ray's serve schema, silently ignore unknown keys.
    Free-form dict fields (``args``, ``user_config``, ``runtime_env``) are not entered.
    """
    if not isinstance(data, dict):
        return []
    problems: list[str] = []
    allowed = _field_names(model)
    for key, value in data.items():
        if key not in allowed:
            problems.append(f"{format_loc((*loc, key))}: {unknown_key_message(str(key), allowed)}")
            continue
        info = model.model_fields.get(key) or next(
            i for i in model.model_fields.values() if i.alias == key
        )
        if isinstance(value, dict):
            for sub in _model_classes(info.annotation)[:1]:
                problems += unknown_keys(value, sub, (*loc, key))
        elif isinstance(value, list):
            for sub in _list_item_models(info.annotation)[:1]:
                for i, item in enumerate(value):
                    problems += unknown_keys(item, sub, (*loc, key, i))
    return problems


def _allowed_at(model: type[BaseModel], loc: Sequence[Any]) -> set[str] | None:
    """Field names of the model found by following ``loc`` (pydantic's error path)."""
    current: list[type[BaseModel]] = [model]
    for part in loc:
        if not current:
            return None
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for m in current:
            if part in m.model_fields:
                ann = m.model_fields[part].annotation
                nxt += _model_classes(ann) or _list_item_models(ann)
        if not nxt:
            # A discriminated-union tag, e.g. ('model', 'smollm2', 'pathh').
            nxt = [m for m in current if _tag_matches(m, part)]
        current = nxt
    return set().union(*(_field_names(m) for m in current)) if current else None


def _tag_matches(model: type[BaseModel], tag: Any) -> bool:
    for info in model.model_fields.values():
        if typing.get_origin(info.annotation) is typing.Literal and tag in typing.get_args(
            info.annotation
        ):
            return True
    return False


def validation_problems(
    err: ValidationError, model: type[BaseModel], prefix: tuple[Any, ...] = ()
) -> list[str]:
    """One readable line per pydantic error, with a suggestion for unknown keys."""
    problems = []
    for e in err.errors():
        loc = tuple(e["loc"])
        where = format_loc((*prefix, *loc)) or "(top level)"
        if e["type"] == "extra_forbidden":
            allowed = _allowed_at(model, loc[:-1]) or set()
            problems.append(f"{where}: {unknown_key_message(str(loc[-1]), allowed)}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}")
    return problems
