"""The stack contract reference, generated from the pydantic models in `components/spec.py`.

`contract_markdown()` walks `PlatformSpec` and `TeamSpec` (every nested model, and every kind of
the `Workload` union) and writes one Markdown section per model: a heading with the YAML path as a
user writes it (`cloudml:platform.gpuPools[]`, `cloudml:team.workloads[] (kind: training)`), the
model's docstring, and a table of its keys (camelCase), readable types, defaults and descriptions.
The output depends only on the models, so it is the same on every run; README.md embeds it between
`<!-- contract:start -->` and `<!-- contract:end -->`, and a test keeps the two equal.

    python -m cloudml.contract_doc                  # print the reference (same as `cloudml contract`)
    python -m cloudml.contract_doc --write-readme   # regenerate the README's copy in place
    python -m cloudml.contract_doc --check          # exit 1 when the README's copy is stale
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
import typing
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Literal, Union

import annotated_types
import yaml
from pydantic import AfterValidator, BaseModel, BeforeValidator, SecretStr, Strict
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from components import fieldtypes
from components.render import RENDERED_KINDS
from components.spec import PLATFORM_KEY, TEAM_KEY, PlatformSpec, TeamSpec

README = Path(__file__).resolve().parent.parent / "README.md"
START_MARKER = "<!-- contract:start -->"
END_MARKER = "<!-- contract:end -->"
REGENERATE_COMMAND = ".venv/bin/python -m cloudml.contract_doc --write-readme"

ROOTS: tuple[tuple[str, type[BaseModel]], ...] = ((PLATFORM_KEY, PlatformSpec), (TEAM_KEY, TeamSpec))

# Value types with a validator of their own (components/fieldtypes.py), by validator function.
_VALIDATED_TYPES: dict[Any, str] = {
    fieldtypes._check_env_name: "environment variable name",
    fieldtypes._check_label_key: "label key (prefix/name)",
    fieldtypes._check_label_value: "label value",
    fieldtypes._check_cpu: "CPU quantity (e.g. 4, 0.5, 500m)",
    fieldtypes._check_memory: "quantity (e.g. 512Mi, 16Gi)",
    fieldtypes._check_storage: "quantity (e.g. 500Gi, 2Ti)",
    fieldtypes._check_image: "container image (registry/repository:tag or @sha256 digest)",
    fieldtypes._check_iam_principal: "IAM role or user ARN",
    fieldtypes._check_email: "email address",
    fieldtypes._check_cron: "cron schedule (5 fields or @daily etc.)",
    fieldtypes.parse_duration: "duration (e.g. 30m, 2h, 1d)",
    fieldtypes._check_secret_key: "Secret key (letters, digits, -, _, .)",
    fieldtypes._check_mount_path: "absolute path (e.g. /data)",
    fieldtypes._check_sub_path: "relative path (e.g. imagenet/train)",
    fieldtypes._check_version_label: "version label (letters, digits, _)",
}
_PLAIN_TYPES: dict[Any, str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    IPv4Network: "IPv4 CIDR (e.g. 10.0.0.0/16)",
    SecretStr: "secret string",
}
_DURATION_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    description: str


@dataclass(frozen=True)
class Section:
    path: str
    doc: str
    rows: tuple[Row, ...]
    note: str = ""


# --- the walk over the models -----------------------------------------------------------------


def contract_sections() -> list[Section]:
    """One section per contract model, parents before children, in field order."""
    sections: list[Section] = []
    for root, model in ROOTS:
        _walk(model, root, list(model.model_fields), sections)
    return sections


def _walk(model: type[BaseModel], path: str, names: list[str], sections: list[Section], note: str = "") -> None:
    children: list[tuple[str, type[BaseModel]]] = []
    unions: list[tuple[str, list[type[BaseModel]]]] = []
    rows = []
    for name in names:
        field = model.model_fields[name]
        key = field.alias or name
        link, child_models, union = _nested(path, key, field.annotation, field.metadata)
        description = field.description or ""
        if not description and key == "kind" and typing.get_origin(field.annotation) is Literal:
            description = f"Selects this kind: `{typing.get_args(field.annotation)[0]}`."
        rows.append(Row(key, _field_type(field, link), _default(field), description))
        if union:
            unions.append((f"{path}.{key}[]", child_models))
        else:
            children.extend((link, m) for m in child_models)
    sections.append(Section(path, _doc(model), tuple(rows), note))
    for child_path, child in children:
        _walk(child, child_path, list(child.model_fields), sections)
    for union_path, members in unions:
        _walk_union(union_path, members, sections)


def _walk_union(path: str, members: list[type[BaseModel]], sections: list[Section]) -> None:
    """A discriminated union: one section for the fields every member shares, one per member."""
    base = _common_base(members)
    shared = [n for n in base.model_fields if all(_same_field(m.model_fields.get(n), base.model_fields[n]) for m in members)]
    _walk(base, f"{path} (every kind)", shared, sections,
          note=f"Every kind below also takes these keys; `kind` picks the kind: {', '.join(_tag(m) for m in members)}.")
    for member in members:
        own = ["kind"] + [n for n in member.model_fields if n != "kind" and n not in shared]
        note = "" if _tag(member) in RENDERED_KINDS else (
            "Validated, but this version of cloudml has no template for this kind: a team stack that uses it is "
            "refused (`cloudml plan` exits 2) and nothing is deployed."
        )
        _walk(member, f"{path} (kind: {_tag(member)})", own, sections, note=note)


def _nested(path: str, key: str, annotation: Any, metadata: list) -> tuple[str, list[type[BaseModel]], bool]:
    """(section path, nested models, is a tagged union) of a field; no models -> ("", [], False)."""
    base, _ = _unwrap(annotation, metadata)
    origin = typing.get_origin(base)
    if _is_model(base):
        return f"{path}.{key}", [base], False
    if origin is list:
        item, item_meta = _unwrap(typing.get_args(base)[0], [])
        if _is_model(item):
            return f"{path}.{key}[]", [item], False
        members = _union_members(item)
        if members and all(_is_model(m) for m in members):
            if not any(isinstance(m, FieldInfo) and m.discriminator for m in item_meta):
                raise TypeError(f"{path}.{key}: a list of models without a discriminator is not documented yet")
            return f"{path}.{key}[]", members, True
    if origin is dict:
        value, _ = _unwrap(typing.get_args(base)[1], [])
        if _is_model(value):
            return f"{path}.{key}.<{_singular(key)}>", [value], False
    return "", [], False


def _common_base(members: list[type[BaseModel]]) -> type[BaseModel]:
    for candidate in members[0].__mro__:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel) and all(issubclass(m, candidate) for m in members):
            if candidate.model_fields:
                return candidate
    raise TypeError(f"{', '.join(m.__name__ for m in members)} share no model with fields")


def _same_field(a: FieldInfo | None, b: FieldInfo) -> bool:
    if a is None:
        return False
    return (repr(a.annotation), repr(a.metadata), repr(a.default), a.default_factory, a.description, a.alias) == (
        repr(b.annotation), repr(b.metadata), repr(b.default), b.default_factory, b.description, b.alias
    )


def _tag(model: type[BaseModel]) -> str:
    (value,) = typing.get_args(model.model_fields["kind"].annotation)
    return value


def _singular(key: str) -> str:
    return key[:-1] if key.endswith("s") else key


def _doc(model: type[BaseModel]) -> str:
    return inspect.cleandoc(model.__doc__ or "").replace("\n", " ")


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


# --- types ------------------------------------------------------------------------------------


def _unwrap(annotation: Any, metadata: list) -> tuple[Any, list]:
    """Strip Annotated (collecting its metadata, FieldInfo's included) and Optional."""
    metadata = list(metadata)
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            base, *extra = typing.get_args(annotation)
            for item in extra:
                metadata.extend([item, *item.metadata] if isinstance(item, FieldInfo) else [item])
            annotation = base
            continue
        members = _union_members(annotation)
        if members and type(None) in members and len(members) == 2:
            annotation = next(m for m in members if m is not type(None))
            continue
        return annotation, metadata


def _union_members(annotation: Any) -> list:
    if typing.get_origin(annotation) in (Union, types.UnionType):
        return list(typing.get_args(annotation))
    return []


def _field_type(field: FieldInfo, link: str) -> str:
    return _type(field.annotation, field.metadata, link)


def _type(annotation: Any, metadata: list, link: str = "") -> str:
    base, meta = _unwrap(annotation, metadata)
    origin = typing.get_origin(base)
    constraints = _constraints(meta)
    if _is_model(base):
        return f"mapping, see `{link}`"
    if origin is Literal:
        values = typing.get_args(base)
        if len(values) == 1:
            return f"`{_yaml(values[0])}`"
        return "one of: " + ", ".join(_yaml(v) for v in values)
    if origin is list:
        (item,) = typing.get_args(base)
        item_base, _ = _unwrap(item, [])
        if _is_model(item_base):
            described = f"mappings, see `{link}`"
        elif _union_members(item_base) and all(_is_model(m) for m in _union_members(item_base)):
            described = f"workloads, see `{link} (kind: …)`"
        else:
            described = _type(item, [])
        return _sized("list", described, constraints)
    if origin is dict:
        key, value = typing.get_args(base)
        value_base, _ = _unwrap(value, [])
        value_text = f"mapping, see `{link}`" if _is_model(value_base) else _type(value, [])
        return _sized("mapping", f"{_type(key, [])} → {value_text}", constraints)
    members = [m for m in _union_members(base) if m is not type(None)]  # optional: the default says so
    if len(members) == 1:
        return _type(members[0], [])
    if members:
        names = [_type(m, []) for m in members]
        return ", ".join(names[:-1]) + " or " + names[-1]
    validated = _validated_name(meta)
    if validated is not None:
        return validated + _bounds(constraints)
    if base in _PLAIN_TYPES:
        text = _PLAIN_TYPES[base]
        if "pattern" in constraints:
            return f"{text} matching `{constraints['pattern']}`"
        return text + _bounds(constraints)
    raise TypeError(f"no readable name for {annotation!r}; teach cloudml/contract_doc.py about it")


def _validated_name(metadata: list) -> str | None:
    for item in metadata:
        if isinstance(item, (AfterValidator, BeforeValidator)):
            func = item.func
            if func in _VALIDATED_TYPES:
                return _VALIDATED_TYPES[func]
            if func.__qualname__ == "dns_label.<locals>.check":
                closure = dict(zip(func.__code__.co_freevars, (c.cell_contents for c in func.__closure__)))
                kind = "DNS-1035 label (starts with a letter, " if closure.get("start_with_letter") else "DNS-1123 label ("
                return f"{kind}≤ {closure['max_length']} chars)"
            if func.__qualname__ == "_cidr.<locals>.parse":
                closure = dict(zip(func.__code__.co_freevars, (c.cell_contents for c in func.__closure__)))
                low, high = closure["min_prefix"], closure["max_prefix"]
                return "IPv4 CIDR string" + ("" if (low, high) == (0, 32) else f" (/{low} to /{high})")
            raise TypeError(f"no readable name for the validator {func.__qualname__}; teach cloudml/contract_doc.py about it")
    return None


def _constraints(metadata: list) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, (Strict, AfterValidator, BeforeValidator)):
            continue
        if isinstance(item, FieldInfo):
            if item.discriminator:
                continue
            found.update(_constraints(item.metadata))
            continue
        if isinstance(item, annotated_types.Ge):
            found["ge"] = item.ge
        elif isinstance(item, annotated_types.Le):
            found["le"] = item.le
        elif isinstance(item, annotated_types.Gt):
            found["gt"] = item.gt
        elif isinstance(item, annotated_types.Lt):
            found["lt"] = item.lt
        elif isinstance(item, annotated_types.MinLen):
            found["min_length"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            found["max_length"] = item.max_length
        elif getattr(item, "pattern", None) is not None:
            found["pattern"] = item.pattern
        else:
            raise TypeError(f"no readable form for the constraint {item!r}; teach cloudml/contract_doc.py about it")
    return found


def _bounds(constraints: dict[str, Any]) -> str:
    low = constraints.get("ge")
    high = constraints.get("le")
    if low is not None and high is not None:
        return f" {low}–{high}"
    parts = []
    if low is not None:
        parts.append(f"≥ {low}")
    if "gt" in constraints:
        parts.append(f"> {constraints['gt']}")
    if high is not None:
        parts.append(f"≤ {high}")
    if "lt" in constraints:
        parts.append(f"< {constraints['lt']}")
    return (" " + ", ".join(parts)) if parts else ""


def _sized(container: str, described: str, constraints: dict[str, Any]) -> str:
    low, high = constraints.get("min_length"), constraints.get("max_length")
    joiner = " of " if container == "list" else ": "
    text = f"{container}{joiner}{described}"
    if low == 1 and high is None:
        text = "non-empty " + text
    elif low or high:
        text += f" ({low or 0}–{high} items)" if high else f" (at least {low} items)"
    return text


# --- defaults ---------------------------------------------------------------------------------


def _default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "all defaults"
    else:
        value = field.default
    if value is None or value is PydanticUndefined:
        return "unset"
    if _is_duration(field) and isinstance(value, int):
        return f"`{_duration(value)}`"
    return f"`{_yaml(value)}`"


def _is_duration(field: FieldInfo) -> bool:
    _, meta = _unwrap(field.annotation, field.metadata)
    return any(isinstance(m, BeforeValidator) and m.func is fieldtypes.parse_duration for m in meta)


def _duration(seconds: int) -> str:
    text = ""
    for unit, size in _DURATION_UNITS:
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            text += f"{count}{unit}"
    return text or "0s"


def _yaml(value: Any) -> str:
    """A value as a user writes it in YAML; strings YAML would read as something else are quoted."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    text = str(value)
    try:
        plain = yaml.safe_load(text) == text
    except yaml.YAMLError:
        plain = False
    return text if plain and text.strip() == text else json.dumps(text)


# --- Markdown ---------------------------------------------------------------------------------


def _cell(text: str) -> str:
    """Table-cell text: `|` escaped everywhere, `<`/`>` escaped outside code spans (else HTML)."""
    parts = text.replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts).replace("\n", " ")


def render_section(section: Section) -> str:
    lines = [f"### `{section.path}`", "", _cell(section.doc)]
    if section.note:
        lines += ["", _cell(section.note)]
    lines += ["", "| key | type | default | description |", "|---|---|---|---|"]
    for row in section.rows:
        lines.append(f"| `{row.key}` | {_cell(row.type)} | {_cell(row.default)} | {_cell(row.description)} |")
    return "\n".join(lines) + "\n"


def contract_markdown() -> str:
    """The stack contract reference (Markdown), generated from components/spec.py."""
    intro = (
        "_Generated from `components/spec.py` by `cloudml contract`; do not edit by hand "
        f"(regenerate the README's copy with `{REGENERATE_COMMAND}`)._\n\n"
        f"A platform stack sets `{PLATFORM_KEY}`, a team stack sets `{TEAM_KEY}` (exactly one of them), "
        "both in `stacks/Pulumi.<stack>.yaml`. Keys are camelCase as shown; an unknown key is an error. "
        "Every problem is reported at once, with its config path (e.g. `cloudml:team.workloads[3].gpus`), "
        "the value and the fix. \"unset\" means the key may be left out; the description says what applies then.\n"
    )
    return "\n".join([intro, *(render_section(s) for s in contract_sections())])


# --- README -----------------------------------------------------------------------------------


def embed(readme: str, markdown: str) -> str:
    """`readme` with the text between the contract markers replaced by `markdown`."""
    pattern = re.compile(re.escape(START_MARKER) + r"\n.*?" + re.escape(END_MARKER), re.DOTALL)
    if len(pattern.findall(readme)) != 1:
        raise ValueError(f"README.md must hold exactly one {START_MARKER} ... {END_MARKER} block")
    return pattern.sub(lambda _: f"{START_MARKER}\n{markdown}{END_MARKER}", readme)


def main(argv: list[str]) -> int:
    if argv == ["--write-readme"]:
        text = README.read_text(encoding="utf-8")
        updated = embed(text, contract_markdown())
        if updated != text:
            README.write_text(updated, encoding="utf-8")
            print(f"updated the stack contract reference in {README}")
        else:
            print(f"{README} is up to date")
        return 0
    if argv == ["--check"]:
        text = README.read_text(encoding="utf-8")
        if embed(text, contract_markdown()) != text:
            print(f"the stack contract reference in {README} is stale; run: {REGENERATE_COMMAND}", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: python -m cloudml.contract_doc [--write-readme | --check]", file=sys.stderr)
        return 2
    sys.stdout.write(contract_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
