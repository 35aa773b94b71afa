"""Workload rendering: a team's workload spec in, the Kubernetes objects it becomes out.

Pure (no Pulumi, no I/O beyond reading templates): `render(kind, context)` resolves defaults in
Python, hands the resolved values to the kind's Jinja template under `templates/workloads/`, and
parses the YAML it produces. Templates run with StrictUndefined, and every value that comes from
config passes through the `q` filter, which writes it as a double-quoted YAML scalar (or a flow
collection of such scalars) with every non-printable or non-ASCII character escaped, so no config
value can change the shape of a manifest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from components.labels import GPU_RESOURCE, GPU_TAINT_KEY, GPU_TYPE_LABEL, MANAGED_BY, PART_OF, TEAM_LABEL, WORKLOAD_LABEL
from components.platform_view import PlatformView
from components.spec import TeamSpec, WorkloadBase, requested_gpus

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
# libyaml's loader when PyYAML was built with it (10x faster on big plans), the Python one otherwise.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Pod Security `restricted` needs a non-zero UID; 1000 is the user the cloudml images create.
RUN_AS_USER = 1000

# Kinds with a template. The contract (spec.py) knows more kinds; a stack that uses one without a
# template is rejected before anything is created (see components.team).
RENDERED_KINDS = ("training",)


class RenderError(ValueError):
    """A template could not be rendered (a bug in a template, never a user's config)."""


@dataclass(frozen=True)
class WorkloadContext:
    """Everything a workload template may use."""

    team: TeamSpec
    workload: WorkloadBase
    platform: PlatformView


def yaml_scalar(value: Any) -> str:
    """Write a config value as YAML that parses back to exactly that value.

    Strings are double-quoted with every character outside printable ASCII escaped (\\uXXXX, or
    \\UXXXXXXXX beyond the BMP so astral characters are not split into surrogates), so quotes,
    colons, `#`, newlines, `{{ }}` and unicode come back byte for byte.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise RenderError(f"cannot write the non-finite number {value!r} into a manifest")
        text = repr(value)
        # YAML 1.1 (PyYAML) reads 1e-05 as a string: its floats need a '.' in the mantissa.
        return text.replace("e", ".0e") if "e" in text and "." not in text else text
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, dict):
        # Explicit keys (`? key`): an implicit key may be at most 1024 characters, an escaped one can be longer.
        return "{" + ", ".join(f"? {_quote(str(k))}: {yaml_scalar(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_scalar(v) for v in value) + "]"
    raise RenderError(f"cannot write a {type(value).__name__} into a manifest")


def _quote(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif 0x20 <= code < 0x7F:
            out.append(ch)
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["q"] = yaml_scalar
    return env


def render_template(path: str, **values: Any) -> list[dict]:
    """Render one template with these values and parse every YAML document it produces."""
    try:
        text = environment().get_template(path).render(**values)
    except jinja2.TemplateError as error:
        raise RenderError(f"template {path}: {error}") from error
    try:
        return [doc for doc in yaml.load_all(text, Loader=SAFE_LOADER) if doc is not None]
    except yaml.YAMLError as error:
        raise RenderError(f"template {path} produced invalid YAML: {error}") from error


def render(kind: str, context: WorkloadContext) -> list[dict]:
    """The Kubernetes objects of one workload."""
    if kind not in RENDERED_KINDS:
        raise RenderError(f"no template for workload kind {kind!r}; templates exist for {', '.join(RENDERED_KINDS)}")
    return render_template(f"workloads/{kind}.yaml.j2", w=context.workload, v=resolve(context))


def resolve(context: WorkloadContext) -> dict[str, Any]:
    """The values every workload template shares, with the team's defaults applied."""
    team, workload, platform = context.team, context.workload, context.platform
    tenancy = platform.teams[team.name]
    gpus = requested_gpus(workload)
    cpu = workload.cpu or team.defaults.cpu
    memory = workload.memory or team.defaults.memory
    resources: dict[str, Any] = {"cpu": cpu, "memory": memory}
    if gpus:
        resources[GPU_RESOURCE] = str(gpus)
    labels = {
        **workload.labels,
        "app.kubernetes.io/name": workload.name,
        "app.kubernetes.io/instance": f"{team.name}-{workload.name}",
        "app.kubernetes.io/component": workload.kind,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        TEAM_LABEL: team.name,
        WORKLOAD_LABEL: workload.name,
    }
    return {
        "name": workload.name,
        "namespace": tenancy.namespace,
        "service_account": tenancy.service_account,
        "image": workload.image or team.defaults.image,
        "labels": labels,
        "annotations": dict(workload.annotations),
        "resources": resources,
        "gpus": gpus,
        "gpu_type": (workload.gpu_type or team.defaults.gpu_type) if gpus else None,
        "gpu_type_label": GPU_TYPE_LABEL,
        "gpu_taint_key": GPU_TAINT_KEY,
        "run_as_user": RUN_AS_USER,
        "env": [{"name": k, "value": v} for k, v in workload.env.items()],
    }
