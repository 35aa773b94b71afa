"""Rules over the pods of Kubernetes objects: Pod Security `restricted` for team workloads, GPU
containers (limits, taint toleration, GPU pool; no GPU node without a GPU limit, no hand-set
device-plugin variables in team workloads), and idle culling of dev environments.

Also the helpers the other workload rules share: the Pulumi types of objects with pods, the pod
templates of an object with their labels, a label selector matcher, and `is_team_object`, which
says which objects are a team's (the scope of every team rule).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from components.labels import (
    GPU_PRESENT_LABEL, GPU_RESOURCE, GPU_TAINT_KEY, GPU_TAINT_VALUE, GPU_TYPE_LABEL, TEAM_LABEL,
)
from policies.core import (
    ADVISORY, MANDATORY, Finding, PlannedResource, PolicyConfig, ResourceRule, containers, is_unknown, items, mapping,
    pod_specs, whole_number,
)
from policies.pod_security import restricted_violations

# Kinds whose objects hold pod templates (policies.core.pod_specs reads them), any version.
POD_TYPES = (
    "kubernetes:core/v1:Pod", "kubernetes:batch/*:Job", "kubernetes:batch/*:CronJob",
    "kubernetes:apps/*:Deployment", "kubernetes:apps/*:StatefulSet", "kubernetes:apps/*:DaemonSet",
    "kubernetes:apps/*:ReplicaSet", "kubernetes:jobset.x-k8s.io/*:JobSet",
)
GPU_TAINT_EFFECT = "NoSchedule"
# What proves a pod lands on GPU nodes: the node label only GPU pools carry (any value: the GPU
# type), or the NVIDIA label with the value "true". A pool name alone (cloudml.io/pool) does not:
# every pool has one, the system pool too, and nothing in the pod says which names are GPU pools.
GPU_POOL_SELECTORS = f"{GPU_TYPE_LABEL} (any GPU type) or {GPU_PRESENT_LABEL}: \"true\""
COMPONENT_LABEL = "app.kubernetes.io/component"
DEV_ENVIRONMENT = "devEnvironment"
# What components/workloads/dev_environment.py renders: Jupyter's idle shutdown flag, and the env
# var that tells a user's own command the idle timeout it must honour.
JUPYTER_IDLE_FLAG = "--ServerApp.shutdown_no_activity_timeout"
IDLE_TIMEOUT_ENV = "CLOUDML_IDLE_TIMEOUT"
_IDLE_FLAG_RE = re.compile(re.escape(JUPYTER_IDLE_FLAG) + r"(?:=|\s+)(-?\d+)")
# restricted_violations ends its messages with ": <what to do>"; these verbs start that part.
_FIX_VERBS = ("set ", "remove", "drop ", "add ", "use ")
# Environment variables the NVIDIA device plugin sets in a container from the devices the kubelet
# allotted it (k8s-device-plugin internal/plugin/server.go getAllocateResponse: the device list
# variable, NVIDIA_VISIBLE_DEVICES by default, and NVIDIA_GDS / NVIDIA_MOFED), plus the MIG
# capability variables the NVIDIA container toolkit honours. Set by hand (a pod's env comes after
# the plugin's, so it wins) they hand a container GPUs that no nvidia.com/gpu request allotted.
DEVICE_PLUGIN_ENV = ("NVIDIA_VISIBLE_DEVICES", "NVIDIA_GDS", "NVIDIA_MOFED", "NVIDIA_MIG_CONFIG_DEVICES",
                     "NVIDIA_MIG_MONITOR_DEVICES")
VISIBLE_DEVICES_ENV = "NVIDIA_VISIBLE_DEVICES"
# Values of NVIDIA_VISIBLE_DEVICES that give a container no GPU (the NVIDIA container toolkit:
# void or empty behaves like runc, none exposes the driver but no device): what a GPU-less
# container on a GPU node sets against an image's NVIDIA_VISIBLE_DEVICES=all (cloudml's dev
# environment sidecar does).
NO_GPU_VALUES = ("void", "none", "")


def lookup(obj: Any, path: str) -> Any:
    """The value at a field path such as `spec.replicatedJobs[0].template.metadata` (None if absent)."""
    for part in path.split("."):
        name, _, index = part.partition("[")
        obj = mapping(obj).get(name)
        if index:
            elements = items(obj)
            i = int(index.rstrip("]"))
            obj = elements[i] if i < len(elements) else None
    return obj


def metadata(obj: Any) -> Mapping[str, Any]:
    return mapping(mapping(obj).get("metadata"))


def name_in(obj: Any, field: str) -> str:
    """metadata.<field> (name, namespace) when it is a string, else "" (absent or unknown)."""
    value = metadata(obj).get(field)
    return value if isinstance(value, str) and not is_unknown(value) else ""


def pods(obj: Any) -> list[tuple[str, Mapping[str, Any]]]:
    """policies.core.pod_specs of an object (unknown or malformed pod specs left out)."""
    return pod_specs(mapping(obj))


def pod_templates(obj: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(path, pod labels, pod spec) of every pod template of an object."""
    out = []
    for path, spec in pods(obj):
        # A template's metadata sits beside its spec; a Pod's is the object's own.
        meta_path = "metadata" if path == "spec" else path[: -len(".spec")] + ".metadata"
        out.append((path, mapping(mapping(lookup(obj, meta_path)).get("labels")), spec))
    return out


def selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    """Whether a LabelSelector (matchLabels, matchExpressions) selects these labels; an empty
    selector selects everything, an absent one nothing."""
    if not isinstance(selector, Mapping):
        return False
    for key, value in mapping(selector.get("matchLabels")).items():
        if labels.get(key) != value:
            return False
    for expr in items(selector.get("matchExpressions")):
        expr = mapping(expr)
        key, operator, values = expr.get("key"), expr.get("operator"), items(expr.get("values"))
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(operator, False)
        if not ok:
            return False
    return True


def is_team_object(obj: Any, config: PolicyConfig) -> bool:
    """Whether a Kubernetes object is a team's, which every team rule judges: its namespace (for a
    Namespace, its own name) starts with teamNamespacePrefix, or it or one of its pod templates
    carries the cloudml.io/team label, whatever namespace it is in (`default`, or none at all)."""
    obj = mapping(obj)
    namespace = name_in(obj, "name" if obj.get("kind") == "Namespace" else "namespace")
    if namespace.startswith(config.team_namespace_prefix):
        return True
    return TEAM_LABEL in mapping(metadata(obj).get("labels")) or any(
        TEAM_LABEL in labels for _, labels, _ in pod_templates(obj))


def container_at(path: str, where: str, container: Mapping[str, Any]) -> str:
    """`<pod path>.containers[0] (main)`: the field path of a container, with its name."""
    return f"{path}.{where} ({mapping(container).get('name', '?')})"


# --- pod-security-restricted --------------------------------------------------------------------


def _split_fix(message: str) -> tuple[str, str]:
    """(what is wrong, the fix as a sentence) of a restricted_violations message: split at the first
    ": " followed by a fix verb (the fix itself may hold ": ", as in a list of allowed types)."""
    at = message.find(": ")
    while at != -1:
        tail = message[at + 2:]
        if tail.startswith(_FIX_VERBS):
            return message[:at], tail[0].upper() + tail[1:] + "."
        at = message.find(": ", at + 2)
    return message, "Change the pod spec so that it meets Pod Security restricted."


def check_pod_security(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    obj = mapping(resource.props)
    if not is_team_object(obj, config):
        return
    for path, spec in pods(obj):
        try:
            problems = restricted_violations(dict(spec))
        except (AttributeError, TypeError):
            yield Finding(f"{path} is malformed (a field holds a value of the wrong type), so Pod Security cannot be checked",
                          "Fix the pod spec's field types.")
            continue
        for problem in problems:
            # restricted_violations names fields from the pod spec (`spec.…`): put the pod's path first.
            message, fix = _split_fix(path + problem[len("spec"):])
            yield Finding(message, fix)


POD_SECURITY_RESTRICTED = ResourceRule(
    name="pod-security-restricted",
    description="Pods of team objects (in a namespace starting with teamNamespacePrefix, or labelled "
    "cloudml.io/team) pass the Pod Security Standards restricted profile.",
    level=MANDATORY,
    types=POD_TYPES,
    check=check_pod_security,
    opt_out="none: mandatory (team namespaces also enforce restricted at admission); "
    "objects neither in a namespace starting with teamNamespacePrefix nor labelled cloudml.io/team are not checked.",
    config_keys=("teamNamespacePrefix",),
)


# --- gpu-resources -----------------------------------------------------------------------------


def _gpu_count(value: Any) -> Any:
    """A GPU quantity as written (`1`, "1", 1.0 from a preview's Struct), normalized for comparison;
    None when absent."""
    if value is None:
        return None
    if (number := whole_number(value)) is not None:
        return number
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def _tolerates_gpu_taint(toleration: Any) -> bool:
    # Kubernetes' matching: an empty key with Exists tolerates every taint; an empty effect every effect.
    t = mapping(toleration)
    key, operator, effect = t.get("key") or "", t.get("operator") or "Equal", t.get("effect") or ""
    if effect not in ("", GPU_TAINT_EFFECT):
        return False
    if operator == "Exists":
        return key in ("", GPU_TAINT_KEY)
    return key == GPU_TAINT_KEY and str(t.get("value") or "") == GPU_TAINT_VALUE


def _gpu_requirement(key: Any, operator: Any, values: list) -> bool:
    """Whether a node requirement keeps a pod on GPU nodes (see GPU_POOL_SELECTORS)."""
    if key == GPU_TYPE_LABEL:
        return operator == "Exists" or (operator == "In" and bool(values))
    if key == GPU_PRESENT_LABEL:
        return operator == "In" and bool(values) and all(v == "true" for v in values)
    return False


def _selects_gpu_pool(spec: Mapping[str, Any]) -> bool | None:
    """True when the pod selects GPU nodes, False when it does not, None when that is unknown."""
    selector = spec.get("nodeSelector")
    if is_unknown(selector) or any(is_unknown(v) for v in mapping(selector).values()):
        return None
    selector = mapping(selector)
    if GPU_TYPE_LABEL in selector or selector.get(GPU_PRESENT_LABEL) == "true":
        return True
    affinity = spec.get("affinity")
    required = lookup(spec, "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution")
    if is_unknown(affinity) or is_unknown(required):
        return None
    terms = items(mapping(required).get("nodeSelectorTerms"))
    # Terms are ORed: every one of them must keep the pod on a GPU pool.
    return bool(terms) and all(
        any(_gpu_requirement(mapping(e).get("key"), mapping(e).get("operator"), items(mapping(e).get("values")))
            for e in items(mapping(term).get("matchExpressions")))
        for term in terms
    )


def _gpu_limits_unknown(spec: Mapping[str, Any]) -> bool:
    """Whether some container's GPU limit may be set but is not known yet (its containers list, a
    container, its resources or limits, or the limit itself is unknown)."""
    groups = [spec.get(g) for g in ("initContainers", "containers", "ephemeralContainers")]
    if any(is_unknown(g) or any(is_unknown(c) for c in items(g)) for g in groups):
        return True
    for _, container in containers(spec):
        resources = container.get("resources")
        limits = mapping(resources).get("limits")
        if is_unknown(resources) or is_unknown(limits) or is_unknown(mapping(limits).get(GPU_RESOURCE)):
            return True
    return False


def _gpu_node_reasons(spec: Mapping[str, Any]) -> list[str]:
    """What (known) in a pod spec lets it run on GPU nodes: selecting a GPU pool, tolerating the GPU taint."""
    reasons = []
    if _selects_gpu_pool(spec) is True:
        reasons.append(f"selects a GPU pool ({GPU_POOL_SELECTORS})")
    if any(not is_unknown(t) and _tolerates_gpu_taint(t) for t in items(spec.get("tolerations"))):
        reasons.append(f"tolerates the GPU taint {GPU_TAINT_KEY}={GPU_TAINT_VALUE}:{GPU_TAINT_EFFECT}")
    return reasons


def _device_plugin_env(path: str, spec: Mapping[str, Any]) -> Iterator[Finding]:
    """Env variables only the NVIDIA device plugin may set (DEVICE_PLUGIN_ENV), set by hand."""
    for where, container in containers(spec):
        for j, env in enumerate(items(container.get("env"))):
            name, value = mapping(env).get("name"), mapping(env).get("value")
            if name not in DEVICE_PLUGIN_ENV or is_unknown(value):
                continue
            if name == VISIBLE_DEVICES_ENV and "valueFrom" not in mapping(env) and str(value or "").strip() in NO_GPU_VALUES:
                continue  # hides the node's GPUs from a container without any: the safe use
            shown = f" ({value})" if isinstance(value, str) and value else ""
            fix = (f"Remove it and request GPUs with limits {GPU_RESOURCE}; to keep a container without GPUs from "
                   f"seeing the node's, set {VISIBLE_DEVICES_ENV} to void." if name == VISIBLE_DEVICES_ENV
                   else f"Remove it; GPUs and their devices come only with limits {GPU_RESOURCE}.")
            yield Finding(
                f"{container_at(path, where, container)}.env[{j}] sets {name}{shown}, which only the NVIDIA device "
                f"plugin may set (from the GPUs allotted by limits[\"{GPU_RESOURCE}\"]): set by hand it bypasses the "
                "GPU request", fix)


def check_gpu_resources(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    obj = mapping(resource.props)
    # Team objects only for the GPU-node and NVIDIA_* checks: the platform's own GPU DaemonSets
    # (device plugin, dcgm-exporter) run on every GPU node without a GPU of their own.
    team = is_team_object(obj, config)
    for path, spec in pods(obj):
        uses_gpus = False
        for where, container in containers(spec):
            resources = container.get("resources")
            requests, limits = mapping(resources).get("requests"), mapping(resources).get("limits")
            request, limit = mapping(requests).get(GPU_RESOURCE), mapping(limits).get(GPU_RESOURCE)
            if any(is_unknown(v) for v in (resources, requests, limits, request, limit)):
                uses_gpus = uses_gpus or is_unknown(request) or is_unknown(limit)
                continue  # not known before the update: pulumi up checks it again
            request, limit = _gpu_count(request), _gpu_count(limit)
            if request in (None, 0) and limit in (None, 0):
                continue
            uses_gpus = True
            at = f"{container_at(path, where, container)}.resources"
            if limit is None:
                yield Finding(f'{at}.limits["{GPU_RESOURCE}"] is not set (requests {request})',
                              f"Set limits {GPU_RESOURCE} to {request}, equal to the requests.")
            elif request is not None and request != limit:
                yield Finding(f'{at}.limits["{GPU_RESOURCE}"] is {limit} but requests is {request}: they must be equal',
                              f"Set requests and limits {GPU_RESOURCE} to the same count.")
        if team:
            yield from _device_plugin_env(path, spec)
            if not uses_gpus and not _gpu_limits_unknown(spec) and (reasons := _gpu_node_reasons(spec)):
                yield Finding(
                    f"{path} {' and '.join(reasons)}, but no container sets limits[\"{GPU_RESOURCE}\"]: the pod can run "
                    "on a GPU node without a GPU counted against the team's quota",
                    f"Set limits {GPU_RESOURCE} on the container that uses GPUs (requests equal), or remove the GPU "
                    "pool selector and the GPU taint toleration.")
        if not uses_gpus:
            continue
        tolerations = spec.get("tolerations")
        if not is_unknown(tolerations) and not any(is_unknown(t) or _tolerates_gpu_taint(t) for t in items(tolerations)):
            yield Finding(f"{path}.tolerations does not tolerate the GPU taint {GPU_TAINT_KEY}={GPU_TAINT_VALUE}:{GPU_TAINT_EFFECT}",
                          f"Add the toleration {{key: {GPU_TAINT_KEY}, operator: Exists, effect: {GPU_TAINT_EFFECT}}}.")
        if _selects_gpu_pool(spec) is False:
            yield Finding(f"{path}.nodeSelector selects no GPU pool (neither {GPU_POOL_SELECTORS}, "
                          "nor a required node affinity on them)",
                          f"Set nodeSelector {GPU_TYPE_LABEL}: <GPU type>.")


GPU_RESOURCES = ResourceRule(
    name="gpu-resources",
    description=f"Containers using {GPU_RESOURCE} set limits equal to requests, and their pods tolerate the GPU "
    "taint and select a GPU pool. Team pods that select a GPU pool or tolerate the GPU taint set an "
    f"{GPU_RESOURCE} limit, and team containers do not set the device plugin's NVIDIA_* variables "
    f"({', '.join(DEVICE_PLUGIN_ENV)}; {VISIBLE_DEVICES_ENV} void or none, which hide the GPUs, is allowed).",
    level=MANDATORY,
    types=POD_TYPES,
    check=check_gpu_resources,
    opt_out="none: mandatory, in every namespace (a GPU pod without them is rejected or never scheduled); the GPU-node "
    "and NVIDIA_* checks cover team objects only (a namespace starting with teamNamespacePrefix, or the "
    "cloudml.io/team label), so the platform's GPU DaemonSets pass.",
    config_keys=("teamNamespacePrefix",),
)


# --- dev-environment-idle-culling --------------------------------------------------------------


def _idle_timeouts(container: Mapping[str, Any]) -> list[int] | None:
    """The idle timeouts a container sets: Jupyter's flag in its command/args (also inside a shell
    script) and CLOUDML_IDLE_TIMEOUT; None when its command, args or env is unknown."""
    fields = [container.get("command"), container.get("args"), container.get("env")]
    fields += [mapping(e).get(k) for e in items(container.get("env")) for k in ("name", "value")]
    if any(is_unknown(v) for f in fields for v in [f, *items(f)]):
        return None
    words = [w for w in items(container.get("command")) + items(container.get("args")) if isinstance(w, str)]
    found = [int(m) for w in words for m in _IDLE_FLAG_RE.findall(w)]
    for env in items(container.get("env")):
        value = mapping(env).get("value") if mapping(env).get("name") == IDLE_TIMEOUT_ENV else None
        if isinstance(value, (str, int)) and str(value).strip().lstrip("-").isdigit():
            found.append(int(str(value).strip()))
    return found


def check_idle_culling(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    for path, labels, spec in pod_templates(mapping(resource.props)):
        if labels.get(COMPONENT_LABEL) != DEV_ENVIRONMENT:
            continue
        found = [_idle_timeouts(c) for _, c in containers(spec)]
        if None in found or is_unknown(spec.get("containers")):
            continue  # not known before the update: pulumi up checks it again
        timeouts = [t for ts in found for t in ts or []]
        if any(t > 0 for t in timeouts):
            continue
        detail = "sets it to 0 or less, which never stops" if timeouts else "sets neither"
        yield Finding(
            f"{path}.containers: no container runs Jupyter with {JUPYTER_IDLE_FLAG}=<seconds> or sets env "
            f"{IDLE_TIMEOUT_ENV} above 0 ({detail}), so an idle environment keeps its node (and GPU)",
            f"Keep cloudml's Jupyter command and set the workload's idleTimeout; a custom command must stop "
            f"after {IDLE_TIMEOUT_ENV} seconds idle.",
        )


DEV_ENVIRONMENT_IDLE_CULLING = ResourceRule(
    name="dev-environment-idle-culling",
    description="Dev environment pods stop themselves when idle (Jupyter's idle shutdown or CLOUDML_IDLE_TIMEOUT).",
    level=ADVISORY,
    types=POD_TYPES,
    check=check_idle_culling,
    opt_out="advisory: set idleTimeout on the devEnvironment workload; the finding does not fail a plan.",
    config_keys=(),
)
