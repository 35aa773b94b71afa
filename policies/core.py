"""The rule framework shared by the CrossGuard pack (`policies/__main__.py`) and `cloudml plan`.

A rule is a pure function over planned resources: a `ResourceRule` looks at one resource of the
types it names, a `StackRule` at all of them (for checks that join resources: a bucket and its
public-access block, a namespace and its quota). Both return `Finding`s — what is wrong, naming the
field, and how to fix it. `evaluate` runs every rule and returns `Violation`s with the rule's name
and level. Nothing here imports Pulumi: the pack adapts these functions to `pulumi_policy`, and the
offline plan calls them directly on the resources it recorded (ConfigGroup objects expanded).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MANDATORY = "mandatory"
ADVISORY = "advisory"
Level = Literal["mandatory", "advisory"]


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

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True)

    allowed_registries: list[str] = Field(
        default_factory=lambda: ["*.dkr.ecr.*.amazonaws.com", "public.ecr.aws", "docker.io/tensorflow", "nvcr.io"],
        description="Registries images may come from (fnmatch patterns on the registry host, or host/namespace). "
        "An image without a registry host is on docker.io.",
    )
    max_gpu_pool_nodes: int = Field(16, ge=1, description="The largest max size a GPU node group may have.")
    team_namespace_prefix: str = Field("team-", description="Namespaces of team workloads start with this.")
    production_stacks: list[str] = Field(default_factory=lambda: ["*prod*"], description="Stack name patterns of production stacks.")
    dev_stacks: list[str] = Field(default_factory=lambda: ["*dev*"], description="Stack name patterns of development stacks.")

    def is_production(self, stack: str) -> bool:
        return any(fnmatch.fnmatchcase(stack, p) for p in self.production_stacks)

    def is_dev(self, stack: str) -> bool:
        return any(fnmatch.fnmatchcase(stack, p) for p in self.dev_stacks)


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
    StatefulSet, DaemonSet, ReplicaSet, JobSet); [] for kinds without pods."""
    kind, spec = obj.get("kind"), obj.get("spec") or {}
    if kind == "Pod":
        return [("spec", spec)]
    if kind == "CronJob":
        return [("spec.jobTemplate.spec.template.spec", ((spec.get("jobTemplate") or {}).get("spec") or {}).get("template", {}).get("spec") or {})]
    if kind == "JobSet":
        return [
            (f"spec.replicatedJobs[{i}].template.spec.template.spec",
             (((rj.get("template") or {}).get("spec") or {}).get("template") or {}).get("spec") or {})
            for i, rj in enumerate(spec.get("replicatedJobs") or [])
        ]
    if kind in ("Job", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        return [("spec.template.spec", (spec.get("template") or {}).get("spec") or {})]
    return []


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def containers(pod_spec: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """(field path inside the pod spec, container) of init, regular and ephemeral containers."""
    return [
        (f"{group}[{i}]", c)
        for group in ("initContainers", "containers", "ephemeralContainers")
        for i, c in enumerate(pod_spec.get(group) or [])
    ]
