"""`cloudml plan`: what a stack would create, computed offline.

`Planner.plan(stack)` loads `stacks/Pulumi.<stack>.yaml`, validates it, plans the referenced
platform stack first for a team stack (its outputs feed the StackReference and the cross-stack
checks), runs the program under mocks, expands every ConfigGroup into the Kubernetes objects it
holds, computes the GPU budget and evaluates the policy rules (`policies.rules.RULES`) over
`planned_resources(plan)`: the recorded resources plus every ConfigGroup object as a resource of its
own, as a real `pulumi preview` registers them. `write_plan` writes `plan.json` (stable ordering) and
one manifest file per component or workload.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cloudml.engine import run_program
from policies.core import PlannedResource, evaluate, kubernetes_type
from policies.settings import PolicySettings, apply_levels
from cloudml.mocks import Registration, redact, secret_names, unwrap
from components.errors import SECRET_DISPLAY
from cloudml.project import PulumiProject
from cloudml.stackfile import PROJECT, STACK_NAME, StackFile, load_stack_file, stack_path
from components import platform_view as pv
from components.errors import ConfigError, ConfigProblem, display_value
from components.platform import gpu_pool_offers
from components.spec import (
    PLATFORM_KEY,
    TEAM_KEY,
    PlatformSpec,
    TeamSpec,
    load_platform,
    parse_team,
    team_problems,
    concurrent_gpus,
    requested_gpus,
)

PLAN_SCHEMA_VERSION = 1
CONFIG_GROUP = "kubernetes:yaml/v2:ConfigGroup"
_TOP_KEYS = ("apiVersion", "kind", "metadata", "spec", "data", "stringData")


class StackConfigError(Exception):
    """A stack's config is invalid; carries the stack's name with the problems."""

    def __init__(self, stack: str, error: ConfigError):
        self.stack = stack
        self.error = error
        super().__init__(f"stack {stack}: {error.render()}")


@dataclass
class ManifestObject:
    """One Kubernetes object the stack would create, and the manifest file it is written to."""

    file: str
    source: str  # URN of the resource that holds it
    object: dict


@dataclass
class StackPlan:
    """Everything `cloudml plan` reports about one stack."""

    stack: str
    kind: str
    resources: list[dict]
    objects: list[ManifestObject]
    outputs: dict  # secrets redacted
    warnings: list[str]
    gpu_budget: dict
    findings: list[dict] = field(default_factory=list)
    policy_rules: int = 0  # how many rules were evaluated (disabled ones left out)
    plain_outputs: dict = field(default_factory=dict, repr=False)  # for a team's StackReference only
    secret_outputs: list[str] = field(default_factory=list)
    project: str = PROJECT  # another project's name under `cloudml plan --project`

    def to_json(self) -> dict:
        return {
            "schemaVersion": PLAN_SCHEMA_VERSION,
            "project": self.project,
            "stack": self.stack,
            "kind": self.kind,
            "summary": summary(self),
            "resources": self.resources,
            "kubernetesObjects": [
                {"file": o.file, "source": o.source, "object": o.object} for o in self.objects
            ],
            "outputs": self.outputs,
            "gpuBudget": self.gpu_budget,
            "warnings": self.warnings,
            "findings": self.findings,
        }


def summary(plan: StackPlan) -> dict:
    by_type: dict[str, int] = {}
    for record in plan.resources:
        by_type[record["type"]] = by_type.get(record["type"], 0) + 1
    kinds: dict[str, int] = {}
    for item in plan.objects:
        kinds[item.object.get("kind", "?")] = kinds.get(item.object.get("kind", "?"), 0) + 1
    return {
        "resources": len(plan.resources),
        "resourcesByType": dict(sorted(by_type.items())),
        "kubernetesObjects": len(plan.objects),
        "kubernetesObjectsByKind": dict(sorted(kinds.items())),
        "protected": sum(1 for r in plan.resources if r["protect"]),
        "policy": {
            "rules": plan.policy_rules,
            "mandatory": sum(1 for f in plan.findings if f["level"] == "mandatory"),
            "advisory": sum(1 for f in plan.findings if f["level"] == "advisory"),
        },
    }


class Planner:
    """Plans stacks from one stacks directory; each stack is planned at most once."""

    def __init__(self, stacks_dir: Path, policy: PolicySettings | None = None, rules: list | None = None,
                 project: PulumiProject | None = None):
        """`policy`: the settings of `--policy-config` (defaults: PolicyConfig's, every rule at its
        level); `rules`: the rules to evaluate (default: policies.rules.RULES); `project`: plan that
        Pulumi project's program and stacks (`--project`) instead of cloudml's."""
        if rules is None:
            from policies.rules import RULES

            rules = RULES
        self.project = project
        self.stacks_dir = project.stacks_dir if project else stacks_dir
        self.policy = policy or PolicySettings()
        self.rules = apply_levels(rules, self.policy.rules)
        self._plans: dict[str, StackPlan] = {}
        self._in_progress: set[str] = set()  # a team referencing a team referencing ... back

    def plan(self, name: str) -> StackPlan:
        if name not in self._plans:
            if name in self._in_progress:
                raise StackConfigError(name, ConfigError([ConfigProblem(
                    f"{TEAM_KEY}.platformStack", f"leads back to stack {name} (a cycle of stack references)",
                    "point platformStack at a platform stack",
                )]))
            self._in_progress.add(name)
            try:
                stack = load_stack_file(self.stacks_dir, name)
                if self.project is not None:
                    planned = self._plan_program(stack, self.project)
                elif stack.kind == "platform":
                    planned = self._plan_platform(stack)
                else:
                    planned = self._plan_team(stack)
                planned.findings = findings(planned, self.rules, self.policy)
                planned.policy_rules = len(self.rules)
                self._plans[name] = planned
            except ConfigError as error:
                raise StackConfigError(name, error) from None
            finally:
                self._in_progress.discard(name)
        return self._plans[name]

    def _plan_platform(self, stack: StackFile) -> StackPlan:
        spec = load_platform(stack.config.get(PLATFORM_KEY))
        run = run_program(stack)  # the program logs the platform's warnings; the run collects them
        return _build(stack, "platform", run, [], platform_budget(spec))

    def _plan_program(self, stack: StackFile, project: PulumiProject) -> StackPlan:
        """Another project's program: its resources and the guardrails; no GPU budget (that needs
        cloudml's contract), and no stack references (nothing here can plan the stacks it reads)."""
        with project.activated():
            run = run_program(stack, program=project.program(), project=project.name)
        planned = _build(stack, "program", run, [], {})
        planned.project = project.name
        return planned

    def _plan_team(self, stack: StackFile) -> StackPlan:
        spec = parse_team(stack.config.get(TEAM_KEY))
        own_problems = team_problems(spec)
        try:
            platform_plan = self._platform_of(spec)
        except ConfigError as error:
            raise ConfigError(own_problems + error.problems) from None
        view = pv.PlatformView.from_outputs(platform_plan.plain_outputs, spec.platform_stack)
        problems = own_problems + pv.team_platform_problems(spec, view)
        if problems:  # the stack's own rules and the cross-stack checks, reported in one round
            raise ConfigError(problems)
        refs = {spec.platform_stack: (platform_plan.plain_outputs, platform_plan.secret_outputs)}
        run = run_program(stack, refs)
        return _build(stack, "team", run, [], team_budget(spec, view))

    def _platform_of(self, spec: TeamSpec) -> StackPlan:
        """Plan the platform stack a team references (it must be in the same stacks directory)."""
        path = f"{TEAM_KEY}.platformStack"
        parts = spec.platform_stack.split("/")
        if len(parts) == 3 and parts[1] != PROJECT:
            raise ConfigError([ConfigProblem(
                path, f"names project {parts[1]}, but platform stacks belong to project {PROJECT}",
                f"write <org>/{PROJECT}/<stack>", display_value(spec.platform_stack),
            )])
        name = spec.platform_stack_name
        if not STACK_NAME.fullmatch(name) or name in (".", ".."):
            raise ConfigError([ConfigProblem(
                path, f"ends in {name!r}, which is not a stack name", "end it with the platform stack's name, e.g. platform-dev",
                display_value(spec.platform_stack),
            )])
        if name in self._in_progress:
            raise ConfigError([ConfigProblem(
                path, f"names stack {name}, which leads back to this stack (a cycle of stack references)",
                "point platformStack at a platform stack", display_value(spec.platform_stack),
            )])
        if not stack_path(self.stacks_dir, name).is_file():
            raise ConfigError([ConfigProblem(
                path, f"names stack {name}, which has no {stack_path(self.stacks_dir, name)}",
                f"point platformStack at a platform stack defined in {self.stacks_dir} (e.g. organization/cloudml/platform-dev)",
                display_value(spec.platform_stack),
            )])
        try:
            platform_plan = self.plan(name)
        except StackConfigError as error:
            raise ConfigError([ConfigProblem(
                path, f"names platform stack {name}, whose config is invalid ({len(error.error.problems)} problem(s))",
                f"fix stack {name} first: cloudml plan {name}", display_value(spec.platform_stack),
            )]) from None
        if platform_plan.kind != "platform":
            raise ConfigError([ConfigProblem(
                path, f"names stack {name}, which is a team stack", "point it at a platform stack",
                display_value(spec.platform_stack),
            )])
        return platform_plan


def _build(stack: StackFile, kind: str, run, warnings: list[str], budget: dict) -> StackPlan:
    by_urn = {r.urn: r for r in run.registrations}
    resources = sorted((resource_record(r) for r in run.registrations), key=lambda r: r["urn"])
    objects = []
    for registration in sorted(run.registrations, key=lambda r: r.urn):
        for obj in _kubernetes_objects(registration):
            objects.append(ManifestObject(_manifest_file(registration, by_urn), registration.urn, obj))
    return StackPlan(
        stack=stack.name,
        kind=kind,
        resources=resources,
        objects=objects,
        outputs=redact(run.outputs),
        warnings=[*warnings, *run.warnings],
        gpu_budget=budget,
        plain_outputs=unwrap(run.outputs),
        secret_outputs=secret_names(run.outputs),
    )


def resource_record(registration: Registration) -> dict:
    return {
        "urn": registration.urn,
        "type": registration.type,
        "name": registration.name,
        "parent": registration.parent,
        "custom": registration.custom,
        "read": registration.read,
        "protect": registration.protect,
        "retainOnDelete": registration.retain_on_delete,
        "dependsOn": registration.depends_on,
        "ignoreChanges": registration.ignore_changes,
        "replaceOnChanges": registration.replace_on_changes,
        "deleteBeforeReplace": registration.delete_before_replace,
        "aliases": registration.aliases,
        "provider": registration.provider,
        "inputs": redact(registration.inputs),
    }


def _kubernetes_objects(registration: Registration) -> list[dict]:
    if registration.type == CONFIG_GROUP:
        return [ordered(o) for o in redact(registration.inputs.get("objs") or [])]
    group = registration.type.split(":")
    if group[0] == "kubernetes" and registration.custom and not group[1].startswith("yaml") and group[1] != "helm.sh/v3":
        obj = redact(registration.inputs)
        if registration.type == "kubernetes:core/v1:Secret":
            # A Secret's values arrive as one secret map: show its keys (not secret) with placeholder
            # values, so the manifest stays a valid Secret that says which keys it holds.
            plain = unwrap(registration.inputs)
            for field in ("data", "stringData"):
                if obj.get(field) == SECRET_DISPLAY and isinstance(plain.get(field), dict):
                    obj[field] = {key: SECRET_DISPLAY for key in plain[field]}
        return [ordered(obj)]
    return []


def _manifest_file(registration: Registration, by_urn: dict[str, Registration]) -> str:
    """A ConfigGroup or a custom resource (a workload's JobSet) gets a file of its own; other
    Kubernetes resources (Secrets, service accounts) go with their component."""
    if registration.type == CONFIG_GROUP or _is_custom_kind(registration.type):
        return f"{registration.name}.yaml"
    parent = by_urn.get(registration.parent)
    return f"{parent.name if parent else registration.name}.yaml"


def _is_custom_kind(resource_type: str) -> bool:
    """kubernetes:<group>/<version>:<Kind> of a CRD (its group has a dot and is not *.k8s.io)."""
    group = resource_type.split(":")[1].split("/")[0] if resource_type.startswith("kubernetes:") else ""
    return "." in group and not group.endswith(".k8s.io")


def ordered(obj: Any, top: bool = True) -> Any:
    """Canonical key order: apiVersion, kind, metadata, spec first at the top, the rest sorted."""
    if isinstance(obj, dict):
        keys = sorted(obj, key=lambda k: (_TOP_KEYS.index(k) if top and k in _TOP_KEYS else len(_TOP_KEYS), k))
        return {k: ordered(obj[k], top=False) for k in keys}
    if isinstance(obj, list):
        return [ordered(v, top=False) for v in obj]
    return obj


# --- policy ---------------------------------------------------------------------------------


def planned_resources(plan: StackPlan | dict) -> list[PlannedResource]:
    """What the rules see: every recorded resource, then every object of every ConfigGroup as its
    own resource, named and parented as pulumi-kubernetes' yaml/v2 registers it (name
    `<group>:<namespace>/<name>`, the group's name being the default resourcePrefix; URN under the
    group's type; `protect` inherited from the group). Takes a StackPlan or a plan.json document."""
    if isinstance(plan, StackPlan):
        records, objects = plan.resources, [(o.source, o.object) for o in plan.objects]
    else:
        records, objects = plan["resources"], [(o["source"], o["object"]) for o in plan["kubernetesObjects"]]
    out = [
        PlannedResource(type=r["type"], name=r["name"], urn=r["urn"], props=r["inputs"], protect=r["protect"],
                        retain_on_delete=r["retainOnDelete"], parent=r["parent"])
        for r in records
    ]
    groups = {r["urn"]: r for r in records if r["type"] == CONFIG_GROUP}
    for source, obj in objects:
        group = groups.get(source)
        if group is None:  # a Kubernetes resource of its own, already in the list
            continue
        type_ = kubernetes_type(obj)
        meta = obj.get("metadata") or {}
        name = f"{meta['namespace']}/{meta.get('name', '')}" if meta.get("namespace") else str(meta.get("name", ""))
        inputs = group["inputs"] if isinstance(group["inputs"], dict) else {}
        prefix = inputs["resourcePrefix"] if isinstance(inputs.get("resourcePrefix"), str) else group["name"]
        name = f"{prefix}:{name}" if prefix else name
        qualified_type = group["urn"].rsplit("::", 1)[0]
        out.append(PlannedResource(type=type_, name=name, urn=f"{qualified_type}${type_}::{name}", props=obj,
                                   protect=group["protect"], parent=group["urn"]))
    return out


def findings(plan: StackPlan, rules: list, settings: PolicySettings) -> list[dict]:
    """Every violation as a plan.json finding, grouped by resource (type, name, URN), each resource's
    in rule order."""
    violations = evaluate(rules, planned_resources(plan), settings.policy_config())
    found = [v.as_dict() for v in violations]
    return sorted(found, key=lambda f: (f["resourceType"], f["resourceName"], f["urn"]))


# --- GPU budget -------------------------------------------------------------------------------


def platform_budget(spec: PlatformSpec) -> dict:
    offers = gpu_pool_offers(spec)
    pools = {
        p.name: {**offers[p.name], "minNodes": p.min, "maxGpus": p.max * p.schedulable_gpus_per_node}
        for p in spec.gpu_pools
    }
    quotas = {t: tenant.gpu_quota for t, tenant in sorted(spec.teams.items())}
    capacity = spec.pool_capacity_gpus()
    return {"pools": pools, "teamQuotas": quotas, "capacityGpus": capacity,
            "quotaGpus": sum(quotas.values()), "oversubscribedBy": max(0, sum(quotas.values()) - capacity)}


def team_budget(spec: TeamSpec, view: pv.PlatformView) -> dict:
    """Per workload: GPUs per pod and GPUs held at once (pods x GPUs: what the quota counts)."""
    workloads = {}
    for w in spec.workloads:
        gpus = requested_gpus(w)
        workloads[w.name] = {
            "gpusPerPod": gpus,
            "concurrentGpus": concurrent_gpus(w),
            "gpuType": (w.gpu_type or spec.defaults.gpu_type) if gpus else None,
        }
    tenancy = view.teams.get(spec.name)
    quota = tenancy.gpu_quota if tenancy else 0
    total = sum(w["concurrentGpus"] for w in workloads.values())
    return {"workloads": workloads, "requestedGpus": total, "quotaGpus": quota, "headroomGpus": quota - total}


# --- writing ----------------------------------------------------------------------------------


def write_plan(plan: StackPlan, out_dir: Path) -> Path:
    """Write out/<stack>/plan.json and out/<stack>/manifests/*.yaml; return the stack's folder."""
    folder = out_dir / plan.stack
    manifests = folder / "manifests"
    if manifests.exists():
        shutil.rmtree(manifests)  # no stale manifest may survive a re-plan
    manifests.mkdir(parents=True)
    (folder / "plan.json").write_text(plan_json(plan), encoding="utf-8")
    for file, objs in manifest_files(plan).items():
        (manifests / file).write_text(objs, encoding="utf-8")
    return folder


def plan_json(plan: StackPlan) -> str:
    # sort_keys: gRPC maps come back in no fixed order, and CI diffs need a stable file.
    return json.dumps(plan.to_json(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class ManifestDumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """PyYAML's safe dumper (libyaml when available) that also quotes what kubectl would misread.

    kubectl parses YAML with go-yaml, whose float rule takes `3e-5` (no '.') as a number, where
    PyYAML's YAML 1.1 rule sees a string and would leave it unquoted; `args: ["3e-5"]` must stay
    a string in the manifest files people apply.
    """


ManifestDumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+0123456789."),
)


def manifest_files(plan: StackPlan) -> dict[str, str]:
    """file name -> YAML text of every object in it, in plan order."""
    files: dict[str, list[dict]] = {}
    for item in plan.objects:
        files.setdefault(item.file, []).append(item.object)
    return {
        name: yaml.dump_all(objs, Dumper=ManifestDumper, sort_keys=False, allow_unicode=True, width=1000)
        for name, objs in sorted(files.items())
    }
