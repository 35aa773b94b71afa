"""Config problems: one shape for every error a stack's config can have.

A `ConfigProblem` names the config path (`cloudml:team.workloads[3].gpus`), the bad value and the
fix. `ConfigError` carries all problems found in one pass, so a user sees every mistake at once.
`from_pydantic` turns pydantic's validation errors into problems with the same shape.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, Union

import pulumi
import pydantic
from pydantic import BaseModel, SecretStr

SECRET_DISPLAY = "[secret]"


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a stack's config."""

    path: str
    message: str
    fix: str
    value: str | None = None  # already formatted for display; None when there is no value

    def __str__(self) -> str:
        got = f" (got {self.value})" if self.value is not None else ""
        return f"{self.path}: {self.message}{got}. Fix: {self.fix}"


class ConfigError(pulumi.RunError):
    """Every problem found in a stack's config; raised once, before anything is created.

    A RunError, so `pulumi up` prints the problems without a Python traceback, also when the error
    is raised inside an apply (the cross-stack checks run when the platform's outputs arrive).
    """

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = sorted(problems, key=_problem_sort_key)
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in the stack config:"
        return "\n".join([header, *(f"  - {p}" for p in self.problems)])


def _problem_sort_key(problem: ConfigProblem) -> tuple:
    # Natural order of paths, so workloads[10] comes after workloads[9].
    parts = []
    for token in problem.path.replace("]", "").replace("[", ".").split("."):
        parts.append((0, int(token), "") if token.isdigit() else (1, 0, token))
    return (parts, problem.message)


def display_value(value: Any) -> str:
    """A short, printable form of a config value (JSON, which reads like YAML)."""
    if isinstance(value, SecretStr):
        return SECRET_DISPLAY
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def format_path(root: str, parts: list[str | int]) -> str:
    """`cloudml:team` + ["workloads", 3, "gpus"] -> `cloudml:team.workloads[3].gpus`."""
    out = root
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


# --- pydantic errors -> problems -------------------------------------------------------------

_GENERIC_FIX = {
    "missing": "add it",
    "bool_type": "use true or false",
    "bool_parsing": "use true or false",
    "int_type": "use a whole number",
    "int_parsing": "use a whole number",
    "int_from_float": "use a whole number",
    "string_type": "use a string (quote it in YAML if it looks like a number or a boolean)",
    "list_type": "use a YAML list",
    "dict_type": "use a YAML mapping",
    "model_type": "use a YAML mapping",
    "model_attributes_type": "use a YAML mapping",
}


# error type -> (fix template, the ctx key holding the limit)
_BOUND_FIX = {
    "greater_than_equal": ("use {} or more", "ge"),
    "greater_than": ("use more than {}", "gt"),
    "less_than_equal": ("use {} or less", "le"),
    "less_than": ("use less than {}", "lt"),
    "too_short": ("give at least {} item(s)", "min_length"),
    "too_long": ("give at most {} item(s)", "max_length"),
    "string_too_long": ("use at most {} characters", "max_length"),
    "string_pattern_mismatch": ("match the pattern {}", "pattern"),
}


def _lower_first(text: str) -> str:
    """'Maximum nodes' -> 'maximum nodes', but 'GPUs per pod' stays as it is."""
    if len(text) > 1 and text[1].isupper():
        return text
    return text[0].lower() + text[1:]


def from_pydantic(root: str, model: type[BaseModel], error: pydantic.ValidationError) -> list[ConfigProblem]:
    """Translate every pydantic error of `model.model_validate` into a ConfigProblem."""
    problems = []
    for item in error.errors(include_url=False):
        parts, owner, field = _walk(model, list(item["loc"]))
        kind = item["type"]
        ctx = item.get("ctx") or {}
        secret = field is not None and _is_secret(field.annotation)
        raw_input = item.get("input")
        # A rule over a whole mapping names its keys in the message; echoing the mapping adds nothing.
        absent = kind == "missing" or (kind == "cloudml" and (raw_input is None or isinstance(raw_input, dict)))
        value = None if absent else (SECRET_DISPLAY if secret else display_value(raw_input))
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            # Point at the discriminator itself, not at the whole mapping.
            key = ctx.get("discriminator", "kind").strip("'")
            parts = [*parts, key]
            value = display_value(ctx["tag"]) if "tag" in ctx else None
        message = ctx.get("message") or _message(kind, item["msg"])
        fix = ctx.get("fix") or _fix(kind, parts, owner, field, ctx, model)
        problems.append(ConfigProblem(format_path(root, parts), message, fix, value))
    return problems


def _message(kind: str, pydantic_msg: str) -> str:
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "is required"
    if kind == "union_tag_invalid":
        return "is not a known kind"
    if kind == "union_tag_not_found":
        return "is required"
    text = pydantic_msg
    if text.startswith("Value error, "):
        text = text[len("Value error, "):]
    return text[0].lower() + text[1:] if text else text


def _fix(kind: str, parts: list, owner: type[BaseModel] | None, field, ctx: dict, root_model: type[BaseModel]) -> str:
    if kind == "extra_forbidden" and owner is not None:
        key = str(parts[-1]) if parts else ""
        allowed = sorted(_alias(name, f) for name, f in owner.model_fields.items())
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return f"{hint}remove it or use one of: {', '.join(allowed)}"
    if kind == "literal_error" and "expected" in ctx:
        return f"use one of {ctx['expected']}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # pydantic names the expected tags only for an invalid tag; read them off the union itself.
        tags = _union_tags(root_model, parts[:-1])
        close = difflib.get_close_matches(str(ctx.get("tag", "")), tags, n=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        return f"{hint}use one of: {', '.join(tags)}"
    described = field.description if field is not None and field.description else None
    generic = _GENERIC_FIX.get(kind)
    if kind in _BOUND_FIX:
        template, key = _BOUND_FIX[kind]
        generic = template.format(ctx.get(key, ""))
    if generic and described:
        return f"{generic}: {_lower_first(described)}"
    return generic or described or "see the stack contract in README.md"


def _alias(name: str, field) -> str:
    return field.alias or name


def is_secret_field(model: type[BaseModel], parts: list) -> bool:
    """Whether the config path `parts` (aliases and indexes) under `model` is a secret field."""
    _, _, field, current = _walk_with_type(model, parts)
    # A field declared SecretStr, or a value inside a mapping of secrets (team secrets.<name>.<key>).
    return (field is not None and _is_secret(field.annotation)) or (field is None and _is_secret(current))


def _is_secret(annotation: Any) -> bool:
    return SecretStr in _flatten(annotation)


def _flatten(annotation: Any) -> list:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _flatten(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _flatten(arg)]
    return [annotation]


def _walk(model: type[BaseModel], loc: list) -> tuple[list, type[BaseModel] | None, Any]:
    parts, owner, field, _ = _walk_with_type(model, loc)
    return parts, owner, field


def _walk_with_type(model: type[BaseModel], loc: list) -> tuple[list, type[BaseModel] | None, Any, Any]:
    """Follow a pydantic error location through the models.

    Returns the path as the user wrote it (aliases, list indexes; discriminator tags that pydantic
    inserts for tagged unions are dropped), the model that owns the last key, that key's field, and
    the type found at the end of the path.
    """
    parts: list = []
    current: Any = model
    owner: type[BaseModel] | None = None
    field = None
    for token in loc:
        if token == "[key]":
            # pydantic marks an error in a dict's key (not its value); the key is already in the path.
            continue
        candidates = _flatten(current)
        models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if isinstance(token, int):
            parts.append(token)
            current = _item_type(candidates)
            continue
        # A tagged union puts the tag in the location: step into the model it names.
        tagged = [m for m in models if _tag_of(m) == token]
        if tagged and len(models) > 1:
            current = tagged[0]
            continue
        target = next((m for m in models if _field_by_alias(m, token) is not None), None)
        if target is not None:
            owner = target
            field = _field_by_alias(target, token)
            parts.append(_alias(_name_of(target, field), field))  # a default's error is located by field name
            current = field.annotation
            continue
        # A dict key (teams.<name>) or a key pydantic could not place (extra keys).
        dict_value = _dict_value_type(candidates)
        parts.append(token)
        if dict_value is not None:
            current = dict_value
            field = None
        else:
            owner = models[0] if models else owner
            field = None
    return parts, owner, field, current


def _union_tags(model: type[BaseModel], parts: list) -> list[str]:
    """The `kind` tags of the tagged union found at `parts` (a path of aliases and indexes)."""
    current: Any = model
    for token in parts:
        candidates = _flatten(current)
        if isinstance(token, int):
            current = _item_type(candidates)
            continue
        target = next((m for m in candidates if isinstance(m, type) and issubclass(m, BaseModel)
                       and _field_by_alias(m, token) is not None), None)
        if target is None:
            return []
        current = _field_by_alias(target, token).annotation
    return [t for t in (_tag_of(m) for m in _flatten(current) if isinstance(m, type) and issubclass(m, BaseModel)) if t]


def _field_by_alias(model: type[BaseModel], key: str):
    """The field a location token names: by its alias (config keys), or by its Python name
    (pydantic locates errors in validated defaults that way)."""
    for name, field in model.model_fields.items():
        if (field.alias or name) == key or name == key:
            return field
    return None


def _name_of(model: type[BaseModel], field) -> str:
    return next(name for name, f in model.model_fields.items() if f is field)


def _tag_of(model: type[BaseModel]) -> str | None:
    kind = model.model_fields.get("kind")
    if kind is None:
        return None
    args = typing.get_args(kind.annotation)
    return args[0] if args else None


def _item_type(candidates: list) -> Any:
    for c in candidates:
        if typing.get_origin(c) in (list, tuple, set):
            return typing.get_args(c)[0]
    return Any


def _dict_value_type(candidates: list) -> Any:
    for c in candidates:
        if typing.get_origin(c) is dict:
            return typing.get_args(c)[1]
    return None
