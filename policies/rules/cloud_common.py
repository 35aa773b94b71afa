"""Helpers the AWS rules share: reading raw provider inputs that may be missing, of an unexpected
shape, or unknown (a `pulumi preview` does not know the outputs of resources it has yet to create),
and reading IAM policy documents.

Rules see props as the provider receives them (camelCase). Under `pulumi_policy` a nested dict or
list may arrive as a read-only proxy (a `Mapping`/`Sequence`, not a `dict`/`list`), and an unknown
value as one of the protocol's sentinel strings; `cloudml plan` records plain JSON. These helpers
accept all of them and never raise on a shape they do not expect.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Re-exported: the unknown sentinels and the shape-tolerant readers live in policies.core, shared by
# every rule (workload rules and pod_security included).
from policies.core import UNKNOWN_SENTINELS, is_unknown, items, mapping, whole_number  # noqa: F401

def strings(value: Any) -> list[str]:
    """An IAM-style "string or list of strings" as a list of strings (other elements dropped)."""
    if isinstance(value, str):
        return [value]
    return [v for v in items(value) if isinstance(v, str)]


def is_true(value: Any) -> bool:
    """True, or the string "true" (pulumi-aws types a few booleans as strings, e.g. a launch
    template's `associatePublicIpAddress`)."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def quoted(value: Any) -> str:
    """A value as it would appear in JSON, for messages: "AES256", false, 20."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def policy_document(value: Any) -> Mapping[str, Any] | None:
    """An IAM policy document from a `policy` input: a JSON string or an object. None when it is
    missing, unknown or not JSON (AWS would reject it; another rule of AWS's own decides that)."""
    if isinstance(value, Mapping):
        return value
    if isinstance(value, str) and not is_unknown(value):
        try:
            document = json.loads(value)
        except ValueError:
            return None
        return document if isinstance(document, Mapping) else None
    return None


def statements(document: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(field path, statement) of every statement: `Statement[1] (ScaleOwnGroups)` names the Sid.
    `Statement` may be one object or a list of them."""
    raw = document.get("Statement")
    listed = [raw] if isinstance(raw, Mapping) else items(raw)
    result = []
    for i, statement in enumerate(listed):
        if not isinstance(statement, Mapping):
            continue
        sid = statement.get("Sid")
        label = f"Statement[{i}]" if not isinstance(raw, Mapping) else "Statement"
        result.append((f"{label} ({sid})" if isinstance(sid, str) and sid else label, statement))
    return result
