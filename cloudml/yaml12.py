"""Reading stack files as the Pulumi CLI does: YAML 1.2 scalars, no duplicate keys, no aliases.

PyYAML implements YAML 1.1, the Pulumi CLI (Go) reads stack files as YAML 1.2. Where they differ,
the offline plan would validate something other than what `pulumi up` gets: `3e-5` is a float in
1.2 but a string in 1.1, `1:30` a string in 1.2 but 90 in 1.1, `on`/`yes` strings in 1.2 but
booleans in 1.1. `StackLoader` resolves plain scalars by the YAML 1.2 core schema, refuses
duplicate keys (Go rejects them, PyYAML keeps the last one silently) and refuses aliases (a few
nested anchors can expand to billions of nodes).
"""

from __future__ import annotations

import re

import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent


class StackFileYAMLError(yaml.YAMLError):
    """A construct cloudml refuses in stack files, with the place it occurs."""

    def __init__(self, problem: str, mark):
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


class StackLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema scalars, and no duplicate keys or aliases."""

    yaml_implicit_resolvers: dict = {}

    def compose_node(self, parent, index):
        if self.check_event(AliasEvent):
            event = self.peek_event()
            raise StackFileYAMLError("aliases (*name) are not allowed in stack files; write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise StackFileYAMLError(f"mapping keys must be strings, not {key!r}; quote it", key_node.start_mark)
            if key in seen:
                raise StackFileYAMLError(f"duplicate key {key!r}; a key may appear once per mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution)
StackLoader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"), list("~nN") + [""])
StackLoader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
StackLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789")
)
StackLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def _construct_int(loader: StackLoader, node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _construct_float(loader: StackLoader, node) -> float:
    text = loader.construct_scalar(node).lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


StackLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
StackLoader.add_constructor("tag:yaml.org,2002:float", _construct_float)


def load(text: str):
    """Parse one stack file's text."""
    try:
        return yaml.load(text, Loader=StackLoader)  # noqa: S506 - StackLoader is a SafeLoader
    except RecursionError:
        raise StackFileYAMLError("nesting is too deep", None) from None


__all__ = ["StackLoader", "StackFileYAMLError", "ConstructorError", "load"]
