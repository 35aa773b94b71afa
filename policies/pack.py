"""The rules as `pulumi_policy` policies: pure construction, no PolicyPack (that blocks forever and
lives only in `policies/__main__.py`).

`policies(rules)` builds one `ResourceValidationPolicy` per `ResourceRule` and one
`StackValidationPolicy` per `StackRule`, with the rule's name, description and level, and a
`PolicyConfigSchema` of the PolicyConfig keys the rule declares it reads (`config_keys`), so
`pulumi preview --policy-pack policies --policy-pack-config cfg.json` can set them per policy.

The adapters turn what the Pulumi engine sends into the `PlannedResource`s the rules take, the same
shape `cloudml plan` builds offline: type token, name, URN, props as plain dicts and lists (the
policy SDK's proxies and secrets unwrapped), protect, parent. A Kubernetes object a ConfigGroup
registers arrives as its own resource (`kubernetes:batch/v1:Job`, props = the object, apiVersion
and kind filled in from the type token if absent), which is what the rules expect.

The engine sends props as a protobuf Struct, which has no integers: every number arrives as a
float (`maxSize: 4` as 4.0). `plain` turns whole floats back into ints, so a rule reads the same
values as offline (where JSON keeps 4). Unknown values (during `pulumi preview`, inputs computed
from resources not created yet) stay the protocol's sentinel strings: the SDK's proxies would raise
on reading them, and every rule skips them (`policies.core.is_unknown`); `pulumi up` validates each
resource again once its inputs are known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import _DictProxy, _ListProxy
from pulumi_policy.secret import Secret, _DictSecretsProxy, _ListSecretsProxy

from policies.core import Finding, PlannedResource, PolicyConfig, ResourceRule, Rule, StackRule

_PROXIES = (_DictProxy, _ListProxy, _DictSecretsProxy, _ListSecretsProxy)


# --- configuration ----------------------------------------------------------------------------


def config_fields(rule: Rule) -> tuple[str, ...]:
    """The PolicyConfig keys (camelCase) a rule reads: its declared `config_keys`, each checked to
    be a PolicyConfig key (a typo would silently drop the key from the pack's config schema)."""
    known = {field.alias or name for name, field in PolicyConfig.model_fields.items()}
    unknown = [key for key in rule.config_keys if key not in known]
    if unknown:
        raise ValueError(f"rule {rule.name} declares config_keys that are not PolicyConfig keys: {', '.join(unknown)}")
    return tuple(rule.config_keys)


def config_properties() -> dict[str, dict[str, Any]]:
    """JSON schema of every PolicyConfig key, with its default (what the CLI fills in when unset)."""
    schema = PolicyConfig.model_json_schema(by_alias=True)["properties"]
    defaults = PolicyConfig().model_dump(by_alias=True, mode="json")
    return {
        key: {**{k: v for k, v in prop.items() if k != "title"}, "default": defaults[key]}
        for key, prop in schema.items()
    }


def config_schema(rule: Rule) -> PolicyConfigSchema | None:
    fields = config_fields(rule)
    if not fields:
        return None
    properties = config_properties()
    return PolicyConfigSchema(properties={key: properties[key] for key in fields})


def policy_config(raw: Mapping[str, Any] | None) -> PolicyConfig:
    """A policy's config (`args.get_config()`) as PolicyConfig; keys the policy does not use and the
    engine's own `enforcementLevel` are ignored, absent keys take their defaults."""
    data = plain(raw or {})
    known = {field.alias or name for name, field in PolicyConfig.model_fields.items()}
    return PolicyConfig.model_validate({k: v for k, v in data.items() if k in known})


# --- adapters ---------------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """Props as plain dicts and lists: the SDK's proxies (which raise on reading an unknown value)
    and secret wrappers unwrapped; whole floats as ints (4.0 -> 4: a Struct's numbers are all
    floats); unknown sentinels kept as they are."""
    if isinstance(value, _PROXIES):
        value = value["__target"]
    if isinstance(value, Secret):
        value = value.value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v) for v in value]
    return value


def _kubernetes_props(resource_type: str, props: dict) -> dict:
    """A Kubernetes object's props always carry apiVersion and kind (the rules read them)."""
    parts = resource_type.split(":")
    if len(parts) == 3 and parts[0] == "kubernetes" and "/" in parts[1] and not parts[1].startswith(("yaml", "helm.sh")):
        group, version = parts[1].split("/", 1)
        props.setdefault("apiVersion", version if group == "core" else f"{group}/{version}")
        props.setdefault("kind", parts[2])
    return props


def from_resource_args(args: ResourceValidationArgs) -> PlannedResource:
    props = plain(args.props)
    opts = args.opts
    return PlannedResource(
        type=args.resource_type, name=args.name, urn=args.urn,
        props=_kubernetes_props(args.resource_type, props if isinstance(props, dict) else {}),
        protect=bool(getattr(opts, "protect", False)), parent=getattr(opts, "parent", None) or None,
    )


def from_policy_resource(resource: Any) -> PlannedResource:
    """A `pulumi_policy.PolicyResource` of a stack validation."""
    props = plain(resource.props)
    parent = getattr(resource.opts, "parent", None) or (resource.parent.urn if resource.parent is not None else None)
    return PlannedResource(
        type=resource.resource_type, name=resource.name, urn=resource.urn,
        props=_kubernetes_props(resource.resource_type, props if isinstance(props, dict) else {}),
        protect=bool(getattr(resource.opts, "protect", False)), parent=parent,
    )


def violation_text(finding: Finding) -> str:
    return f"{finding.message} Fix: {finding.fix}"


def resource_validation(rule: ResourceRule):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if not rule.applies_to(args.resource_type):
            return
        for finding in rule.check(from_resource_args(args), policy_config(args.get_config())):
            report_violation(violation_text(finding), None)

    return validate


def stack_validation(rule: StackRule):
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources = [from_policy_resource(r) for r in args.resources]
        for resource, finding in rule.check(resources, policy_config(args.get_config())):
            report_violation(violation_text(finding), resource.urn)

    return validate


def _level(level: str) -> EnforcementLevel:
    return EnforcementLevel(level)


def policies(rules: Iterable[Rule] | None = None) -> list[ResourceValidationPolicy | StackValidationPolicy]:
    """One pulumi_policy policy per rule (default: every rule of `policies.rules.RULES`)."""
    if rules is None:
        from policies.rules import RULES

        rules = RULES
    built: list[ResourceValidationPolicy | StackValidationPolicy] = []
    for rule in rules:
        common = dict(name=rule.name, description=rule.description, enforcement_level=_level(rule.level),
                      config_schema=config_schema(rule))
        if isinstance(rule, ResourceRule):
            built.append(ResourceValidationPolicy(validate=resource_validation(rule), **common))
        else:
            built.append(StackValidationPolicy(validate=stack_validation(rule), **common))
    return built
