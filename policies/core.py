"""The rule framework shared by the CrossGuard pack (`policies/__main__.py`) and `cloudml plan`.

A rule is a pure function over planned resources: a `ResourceRule` looks at one resource of the
types it names, a `StackRule` at all of them (for checks that join resources: a bucket and its
public-access block, a namespace and its quota). Both return `Finding`s — what is wrong, naming the
field, and how to fix it. `evaluate` runs every rule and returns `Violation`s with the rule's name
and level. Nothing here imports Pulumi: the pack adapts these functions to `pulumi_policy`, and the
offline plan calls them directly on the resources it recorded (ConfigGroup objects expanded).

Values a rule cannot know are never judged. During `pulumi preview` an input computed from another
resource's output is unknown: the engine sends one of the protocol's sentinel strings in its place
(`UNKNOWN_SENTINELS`), which `policies.pack.plain` keeps as they are. Every rule asks `is_unknown`
before it reads a value as set, unset, true or false, and skips what is unknown; `pulumi up`
validates each resource again once its inputs are known. `mapping`, `items` and `whole_number`
read a value of an unexpected shape (unknown, missing, malformed) as empty, never raising.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from pydantic.alias_generators import to_camel

MANDATORY = "mandatory"
ADVISORY = "advisory"
Level = Literal["mandatory", "advisory"]
STACK_REFERENCE = "pulumi:pulumi:StackReference"

# The sentinels the Pulumi policy protocol puts in place of a value that is unknown during preview
# (pulumi_policy/proxy.py UNKNOWN_*_VALUE; the engine itself sends the string one for every type).
UNKNOWN_SENTINELS = frozenset({
    "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # boolean
    "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
    "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string
    "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
    "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
    "e48ece36-62e2-4504-bad9-02848725956a",  # archive
    "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
})


def is_unknown(value: Any) -> bool:
    """True for a value Pulumi does not know yet (an output of a resource not yet created)."""
    return isinstance(value, str) and value in UNKNOWN_SENTINELS


def mapping(value: Any) -> Mapping[str, Any]:
    """`value` if it is a mapping, else an empty one (missing, unknown or malformed)."""
    return value if isinstance(value, Mapping) else {}


def items(value: Any) -> list[Any]:
    """The elements of a list value; [] when missing, unknown or not a list. A bare string is not a list."""
    return list(value) if isinstance(value, Sequence) and not isinstance(value, (str, bytes)) else []


def whole_number(value: Any) -> int | None:
    """An integer, also when it arrives as a float (a protobuf Struct has no integers: 4 -> 4.0);
    None for anything else (bool, unknown, missing, 1.5)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


# The whole IPv4 and IPv6 address spaces: a list of CIDRs covering either admits the whole internet.
WHOLE_ADDRESS_SPACES = (ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0"))


def whole_spaces_covered(cidrs: Iterable[Any]) -> list[tuple[str, list[str]]]:
    """(whole address space, the listed CIDRs of its family) for each of 0.0.0.0/0 and ::/0 that
    these CIDRs cover together (`0.0.0.0/1` + `128.0.0.0/1` as much as `0.0.0.0/0`): the networks
    of each family, collapsed (`ipaddress.collapse_addresses`), are exactly the whole space. Values
    that are not CIDRs (unknown, malformed) cover nothing."""
    found = []
    for whole in WHOLE_ADDRESS_SPACES:
        listed: list[str] = []
        networks = []
        for cidr in cidrs:
            if is_unknown(cidr):
                continue
            try:
                network = ipaddress.ip_network(str(cidr).strip(), strict=False)
            except ValueError:
                continue
            if network.version == whole.version:
                listed.append(str(cidr))
                networks.append(network)
        if networks and list(ipaddress.collapse_addresses(networks)) == [whole]:
            found.append((str(whole), listed))
    return found


@dataclass(frozen=True)
class PlannedResource:
    """One resource as a rule sees it: its Pulumi type token, name, URN, inputs (camelCase, as the
    provider receives them; for a Kubernetes object, the object itself) and resource options."""

    type: str
    name: str
    urn: str
    props: Mapping[str, Any]
    protect: bool = False
    retain_on_delete: bool = False
    parent: str | None = None

    @property
    def stack(self) -> str:
        """The stack's name, from the URN (`urn:pulumi:<stack>::<project>::...`)."""
        return self.urn.split(":", 3)[2].split("::", 1)[0] if self.urn.startswith("urn:pulumi:") else ""


@dataclass(frozen=True)
class Finding:
    """What is wrong (naming the field) and how to fix it."""

    message: str
    fix: str


@dataclass(frozen=True)
class Violation:
    """A finding of a rule on a resource."""

    rule: str
    level: Level
    resource_type: str
    resource_name: str
    urn: str
    message: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return {"rule": self.rule, "level": self.level, "resourceType": self.resource_type,
                "resourceName": self.resource_name, "urn": self.urn, "message": self.message, "fix": self.fix}


class PolicyConfig(BaseModel):
    """The pack's configuration (`pulumi preview --policy-pack-config`, `cloudml plan --policy-config`)."""

    # Strict: `maxGpuPoolNodes: true` or "8" is a mistake to report, not a value to coerce.
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, strict=True)

    allowed_registries: list[StrictStr] = Field(
        default_factory=lambda: ["*.dkr.ecr.*.amazonaws.com", "public.ecr.aws", "docker.io/tensorflow", "nvcr.io"],
        description="Registries images may come from (fnmatch patterns on the registry host, or host/namespace). "
        "An image without a registry host is on docker.io.",
    )
    max_gpu_pool_nodes: StrictInt = Field(16, ge=1, description="The largest max size a GPU node group may have.")
    team_namespace_prefix: StrictStr = Field("team-", description="Namespaces of team workloads start with this.")
    production_stacks: list[StrictStr] = Field(default_factory=lambda: ["*prod*"], description="Stack name patterns of production stacks.")
    dev_stacks: list[StrictStr] = Field(default_factory=lambda: ["*dev*"], description="Stack name patterns of development stacks.")

    def is_production(self, *stacks: str) -> bool:
        """Whether any of these stack names (see `environment_stacks`) matches productionStacks."""
        return any(fnmatch.fnmatchcase(stack, p) for stack in stacks for p in self.production_stacks)

    def is_dev(self, *stacks: str) -> bool:
        return any(fnmatch.fnmatchcase(stack, p) for stack in stacks for p in self.dev_stacks)


def environment_stacks(resources: Iterable[PlannedResource], stack: str) -> tuple[str, ...]:
    """The names that say which environment a stack is in: its own name, then the stack name (last
    segment of `org/project/stack`) of every StackReference it reads. A team stack `team-vision`
    reading `org/cloudml/platform-prod` runs in production, whatever its own name."""
    names = [stack]
    for r in resources:
        ref = mapping(r.props).get("name")
        if r.type == STACK_REFERENCE and r.stack == stack and isinstance(ref, str) and not is_unknown(ref):
            names.append(ref.rsplit("/", 1)[-1])
    return tuple(dict.fromkeys(names))


ResourceCheck = Callable[[PlannedResource, PolicyConfig], Iterable[Finding]]
StackCheck = Callable[[list[PlannedResource], PolicyConfig], Iterable[tuple[PlannedResource, Finding]]]


@dataclass(frozen=True)
class ResourceRule:
    """A rule over single resources of the listed types (exact tokens, or fnmatch patterns such as
    `kubernetes:*:Service`)."""

    name: str
    description: str
    level: Level
    types: tuple[str, ...]
    check: ResourceCheck
    opt_out: str = ""  # how to configure or opt out (documented in README)
    # The PolicyConfig keys (camelCase) the check reads: the policy's config schema in the pack.
    config_keys: tuple[str, ...] = ()

    def applies_to(self, resource_type: str) -> bool:
        return any(fnmatch.fnmatchcase(resource_type, t) for t in self.types)


@dataclass(frozen=True)
class StackRule:
    """A rule over all of a stack's resources at once."""

    name: str
    description: str
    level: Level
    check: StackCheck
    opt_out: str = ""
    config_keys: tuple[str, ...] = ()


Rule = ResourceRule | StackRule


def evaluate(rules: Iterable[Rule], resources: list[PlannedResource], config: PolicyConfig | None = None) -> list[Violation]:
    """Every violation of every rule, in rule order, then resource order."""
    config = config or PolicyConfig()
    violations: list[Violation] = []
    for rule in rules:
        if isinstance(rule, ResourceRule):
            pairs = ((r, f) for r in resources if rule.applies_to(r.type) for f in rule.check(r, config))
        else:
            pairs = rule.check(resources, config)
        for resource, finding in pairs:
            violations.append(Violation(rule.name, rule.level, resource.type, resource.name, resource.urn,
                                        finding.message, finding.fix))
    return violations


# --- helpers for Kubernetes objects -----------------------------------------------------------


def kubernetes_type(obj: Mapping[str, Any]) -> str:
    """The Pulumi type token of a Kubernetes object: `kubernetes:<group or core>/<version>:<Kind>`."""
    api_version = str(obj.get("apiVersion", ""))
    group, _, version = api_version.rpartition("/")
    return f"kubernetes:{group or 'core'}/{version}:{obj.get('kind', '')}"


def pod_specs(obj: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(path, pod spec) of every pod template in a Kubernetes object (Pod, Job, CronJob, Deployment,
    StatefulSet, DaemonSet, ReplicaSet, JobSet); [] for kinds without pods. A pod spec that is
    unknown (or malformed) is left out: there is nothing to judge."""

    def at(value: Any, *path: str) -> Any:
        for name in path:
            value = mapping(value).get(name)
        return value

    kind, spec = mapping(obj).get("kind"), mapping(obj).get("spec")
    if kind == "Pod":
        found = [("spec", spec)]
    elif kind == "CronJob":
        found = [("spec.jobTemplate.spec.template.spec", at(spec, "jobTemplate", "spec", "template", "spec"))]
    elif kind == "JobSet":
        found = [(f"spec.replicatedJobs[{i}].template.spec.template.spec", at(rj, "template", "spec", "template", "spec"))
                 for i, rj in enumerate(items(at(spec, "replicatedJobs")))]
    elif kind in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        found = [("spec.template.spec", at(spec, "template", "spec"))]
    else:
        found = []
    return [(path, pod or {}) for path, pod in found if pod is None or isinstance(pod, Mapping)]


def containers(pod_spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(field path inside the pod spec, container) of init, regular and ephemeral containers; an
    unknown or malformed container is left out."""
    return [
        (f"{group}[{i}]", c)
        for group in ("initContainers", "containers", "ephemeralContainers")
        for i, c in enumerate(items(mapping(pod_spec).get(group)))
        if isinstance(c, Mapping)
    ]
