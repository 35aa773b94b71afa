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
from components.spec import S3_VOLUMES, TeamSpec, WorkloadBase, requested_gpus

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
# libyaml's loader when PyYAML was built with it (10x faster on big plans), the Python one otherwise.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Pod Security `restricted` needs a non-zero UID; 1000 is the user the cloudml images create.
RUN_AS_USER = 1000

# Every workload kind of the contract has a template `templates/workloads/<kind>.yaml.j2` and a
# module in components/workloads/ that adds the kind's own values to the shared ones.
RENDERED_KINDS = ("training", "distributedTraining", "modelService", "devEnvironment", "sweep", "batchPrediction", "tensorboard")


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
    from components.workloads import KIND_VALUES  # the kind modules import this module

    if kind not in KIND_VALUES:
        raise RenderError(f"no template for workload kind {kind!r}; templates exist for {', '.join(KIND_VALUES)}")
    values = KIND_VALUES[kind](context, resolve(context))
    return render_template(f"workloads/{kind}.yaml.j2", w=context.workload, v=values)


def resolve(context: WorkloadContext) -> dict[str, Any]:
    """The values every workload template shares, with the team's defaults applied.

    A kind's module (components/workloads/) returns these with its own values added or replaced:
    its default image and command, the environment it provides, the volumes it mounts.
    """
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
    command, args = wrap_command(workload.command, workload.args, workload.pre_commands, workload.post_commands)
    pod_volumes, volume_mounts = data_volumes(workload, tenancy.volumes)
    return {
        "name": workload.name,
        "team": team.name,
        "namespace": tenancy.namespace,
        "service_account": tenancy.service_account,
        "image": workload.image or team.defaults.image,
        "labels": labels,
        # The labels a workload's Services, PodDisruptionBudgets and ScaledObjects select its pods by.
        "selector": {TEAM_LABEL: team.name, WORKLOAD_LABEL: workload.name},
        "annotations": dict(workload.annotations),
        "resources": resources,
        "gpus": gpus,
        "gpu_type": (workload.gpu_type or team.defaults.gpu_type) if gpus else None,
        "gpu_type_label": GPU_TYPE_LABEL,
        "gpu_taint_key": GPU_TAINT_KEY,
        "run_as_user": RUN_AS_USER,
        "command": command,
        "args": args,
        "env": user_env(workload),
        "pod_volumes": pod_volumes,
        "volume_mounts": volume_mounts,
    }


def user_env(workload: WorkloadBase) -> list[dict]:
    """The workload's own environment: plain values, then values read from the stack's Secrets."""
    plain = [{"name": k, "value": v} for k, v in workload.env.items()]
    secret = [
        {"name": k, "valueFrom": {"secretKeyRef": {"name": ref.secret, "key": ref.key}}}
        for k, ref in workload.secret_env.items()
    ]
    return plain + secret


def data_volumes(workload: WorkloadBase, claims: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """(pod volumes, container volumeMounts) of the workload's data mounts: one pod volume per
    source, bound to the claim the platform made for the team; bucket sources are read-only."""
    pod_volumes: dict[str, dict] = {}
    mounts = []
    for mount in workload.volumes:
        name = f"data-{mount.source}"
        claim = {"claimName": claims[mount.source]}
        if mount.source in S3_VOLUMES:
            claim["readOnly"] = True
        pod_volumes.setdefault(name, {"name": name, "persistentVolumeClaim": claim})
        entry = {"name": name, "mountPath": mount.mount_path, "readOnly": mount.read_only}
        if mount.sub_path:
            entry["subPath"] = mount.sub_path
        mounts.append(entry)
    return list(pod_volumes.values()), mounts


# Runs preCommands, then the main command ("$@": never pasted into the script, so its arguments
# reach it exactly), then postCommands. Without postCommands the main command replaces the shell
# (exec) so it receives SIGTERM itself; with them the shell forwards SIGTERM and keeps the exit code.
_WRAPPER_NAME = "cloudml-command"


def wrap_command(command: list[str], args: list[str], pre: list[str], post: list[str]) -> tuple[list[str], list[str]]:
    """(command, args) of a container that runs `pre` shell lines, `command + args`, then `post`."""
    if not pre and not post:
        return list(command), list(args)
    lines = ["set -e", *pre]
    if not post:
        lines.append('exec "$@"')
    else:
        lines += [
            "set +e",
            '"$@" &',
            "child=$!",
            "trap 'kill -TERM \"$child\" 2>/dev/null' TERM INT",
            'wait "$child"',
            "CLOUDML_EXIT_CODE=$?",
            # A trapped signal ends the first wait early: wait again for the real exit code.
            'if kill -0 "$child" 2>/dev/null; then wait "$child"; CLOUDML_EXIT_CODE=$?; fi',
            "export CLOUDML_EXIT_CODE",
            *post,
            'exit "$CLOUDML_EXIT_CODE"',
        ]
    # The kubelet expands `$(VAR)` and `$$` in a container's command before the shell runs it; doubling
    # every `$` makes it hand the shell the script exactly as written (`$(date)`, `$$`, `$HOME`).
    script = ("\n".join(lines) + "\n").replace("$", "$$")
    return ["/bin/sh", "-c", script, _WRAPPER_NAME], [*command, *args]


def bucket_uri(platform: PlatformView, role: str, team: str, *parts: str) -> str:
    """`s3://<platform bucket of this role>/<team>/<parts...>/` — always under the team's prefix."""
    return "s3://" + "/".join([platform.buckets[role], team, *parts]) + "/"
