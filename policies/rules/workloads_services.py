"""Rules over how team workloads are reached and kept running: LoadBalancer Services are internal
unless explicitly internet-facing with source ranges, team namespaces have a GPU quota, and model
services of production stacks survive a node drain (replicas and a PodDisruptionBudget).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterator

from components.labels import GPU_RESOURCE
from policies.core import (
    ADVISORY, MANDATORY, Finding, PlannedResource, PolicyConfig, ResourceRule, StackRule, environment_stacks, is_unknown,
    items, mapping, whole_number, whole_spaces_covered,
)
from policies.rules.workloads_pods import (
    COMPONENT_LABEL, is_team_object, metadata, name_in, pod_templates, selector_matches,
)

# AWS Load Balancer Controller; the legacy in-tree controller reads only the `internal` annotation.
SCHEME_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-scheme"
LEGACY_INTERNAL_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-internal"
INTERNAL, INTERNET_FACING = "internal", "internet-facing"
GPU_QUOTA = f"requests.{GPU_RESOURCE}"
MODEL_SERVICE = "modelService"
MIN_PRODUCTION_REPLICAS = 2


def _types(resources: list[PlannedResource], pattern: str) -> list[PlannedResource]:
    return [r for r in resources if fnmatch.fnmatchcase(r.type, pattern)]


# --- load-balancer-internal ---------------------------------------------------------------------


def check_load_balancer(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    spec = mapping(mapping(resource.props).get("spec"))
    if spec.get("type") != "LoadBalancer":
        return  # not a load balancer, or its type is unknown: nothing to judge
    annotations = metadata(resource.props).get("annotations")
    field = f'metadata.annotations["{SCHEME_ANNOTATION}"]'
    scheme = mapping(annotations).get(SCHEME_ANNOTATION)
    if is_unknown(annotations) or is_unknown(scheme) or (
            scheme is None and is_unknown(mapping(annotations).get(LEGACY_INTERNAL_ANNOTATION))):
        return  # not known before the update: pulumi up checks it again
    annotations = mapping(annotations)
    # The controller's scheme annotation wins over the legacy one; either says internal.
    if scheme == INTERNAL or (scheme is None and annotations.get(LEGACY_INTERNAL_ANNOTATION) == "true"):
        return
    internal_fix = f"Set {field} to {INTERNAL}."
    if scheme is None:
        yield Finding(f"{field} is not set, so the load balancer is internet-facing", internal_fix)
        return
    if scheme != INTERNET_FACING:
        yield Finding(f"{field} is {scheme}, neither {INTERNAL} nor {INTERNET_FACING}", internal_fix)
        return
    # Explicitly internet-facing (what cloudml renders for `expose: internet`): only from listed CIDRs.
    ranges_fix = (f"List the CIDRs allowed to connect in spec.loadBalancerSourceRanges (never 0.0.0.0/0), "
                  f"or set {field} to {INTERNAL}.")
    ranges = spec.get("loadBalancerSourceRanges")
    if is_unknown(ranges):
        return
    ranges = items(ranges)
    whole = set()
    if not ranges:
        yield Finding(f"spec.loadBalancerSourceRanges is empty on an {INTERNET_FACING} load balancer, "
                      "which then admits the whole internet", ranges_fix)
    for i, cidr in enumerate(ranges):
        if is_unknown(cidr):
            continue
        try:
            network = ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            yield Finding(f"spec.loadBalancerSourceRanges[{i}] {cidr} is not a CIDR", ranges_fix)
            continue
        if network.prefixlen == 0:
            whole.add(str(network))
            yield Finding(f"spec.loadBalancerSourceRanges[{i}] is {cidr}, which admits the whole internet", ranges_fix)
    # Split into pieces (0.0.0.0/1 + 128.0.0.0/1), the whole space is as open.
    for space, listed in whole_spaces_covered(ranges):
        if space not in whole:
            yield Finding(f"spec.loadBalancerSourceRanges {', '.join(listed)} together cover {space}, which admits the "
                          "whole internet", ranges_fix)


LOAD_BALANCER_INTERNAL = ResourceRule(
    name="load-balancer-internal",
    description="LoadBalancer Services are internal, unless explicitly internet-facing with source ranges "
    "that neither are nor together cover 0.0.0.0/0 (or ::/0).",
    level=MANDATORY,
    types=("kubernetes:core/v1:Service",),
    check=check_load_balancer,
    opt_out=f"opt in per Service with {SCHEME_ANNOTATION}: {INTERNET_FACING} and spec.loadBalancerSourceRanges "
    "(cloudml: `expose: internet` with sourceCidrs, on a platform that allows internet-facing load balancers).",
    config_keys=(),
)


# --- team-namespace-gpu-quota -------------------------------------------------------------------


def _unknown_quota(quota: PlannedResource, namespace: str) -> bool:
    meta = mapping(quota.props).get("metadata")
    spec = mapping(quota.props).get("spec")
    in_namespace = is_unknown(meta) or is_unknown(mapping(meta).get("namespace")) or name_in(quota.props, "namespace") == namespace
    return in_namespace and (is_unknown(meta) or is_unknown(spec) or is_unknown(mapping(spec).get("hard"))
                             or is_unknown(mapping(mapping(spec).get("hard")).get(GPU_QUOTA))
                             or is_unknown(mapping(meta).get("namespace")))


def check_gpu_quota(resources: list[PlannedResource], config: PolicyConfig) -> Iterator[tuple[PlannedResource, Finding]]:
    quotas = _types(resources, "kubernetes:core/v1:ResourceQuota")
    for namespace in _types(resources, "kubernetes:core/v1:Namespace"):
        name = name_in(namespace.props, "name")
        if not name or not is_team_object(namespace.props, config):
            continue
        # A quota whose namespace or limits are unknown (before the update) may be the one: not judged.
        if any(_unknown_quota(q, name) for q in quotas):
            continue
        hard_limits = [(name_in(q.props, "name"), mapping(mapping(mapping(q.props).get("spec")).get("hard")))
                       for q in quotas if name_in(q.props, "namespace") == name]
        if any(GPU_QUOTA in hard for _, hard in hard_limits):
            continue
        plain = [q for q, hard in hard_limits if GPU_RESOURCE in hard]
        note = (f"; ResourceQuota {plain[0]} sets spec.hard[\"{GPU_RESOURCE}\"], which does not count: quotas "
                f"limit extended resources only as {GPU_QUOTA}") if plain else ""
        yield namespace, Finding(
            f"team namespace {name} has no ResourceQuota with spec.hard[\"{GPU_QUOTA}\"]{note}",
            f"Add a ResourceQuota in namespace {name} with spec.hard[\"{GPU_QUOTA}\"] set to the team's GPU share.",
        )


TEAM_NAMESPACE_GPU_QUOTA = StackRule(
    name="team-namespace-gpu-quota",
    description=f"Every team namespace (named with teamNamespacePrefix, or labelled cloudml.io/team) has a "
    f"ResourceQuota that caps {GPU_QUOTA}.",
    level=MANDATORY,
    check=check_gpu_quota,
    opt_out="none: mandatory (cloudml's tenancy renders the quota from the team's gpuQuota).",
    config_keys=("teamNamespacePrefix",),
)


# --- model-service-availability ---------------------------------------------------------------


def _min_replicas(deployment: PlannedResource, scaled_objects: list[PlannedResource]) -> tuple[int | None, str]:
    """The fewest replicas the Deployment runs (None when unknown), and where that number comes from."""
    name, namespace = name_in(deployment.props, "name"), name_in(deployment.props, "namespace")
    for scaled in scaled_objects:
        target = mapping(mapping(mapping(scaled.props).get("spec")).get("scaleTargetRef"))
        if (name_in(scaled.props, "namespace") == namespace and target.get("name") == name
                and target.get("kind", "Deployment") == "Deployment"):
            count = mapping(mapping(scaled.props).get("spec")).get("minReplicaCount", 0)  # KEDA's default is 0
            return whole_number(count), f"ScaledObject {name_in(scaled.props, 'name')} spec.minReplicaCount"
    count = mapping(mapping(deployment.props).get("spec")).get("replicas", 1)  # Kubernetes' default is 1
    return whole_number(count), "spec.replicas"


def _budget_may_cover(budget: PlannedResource, namespace: str, pod_labels) -> bool:
    """Whether a PodDisruptionBudget selects these pods (or may: its namespace or selector is unknown)."""
    spec = mapping(budget.props).get("spec")
    selector = mapping(spec).get("selector")
    if is_unknown(spec) or is_unknown(selector) or is_unknown(mapping(metadata(budget.props)).get("namespace")):
        return True
    return name_in(budget.props, "namespace") == namespace and selector_matches(selector, pod_labels)


def check_model_service_availability(resources: list[PlannedResource], config: PolicyConfig) -> Iterator[tuple[PlannedResource, Finding]]:
    scaled_objects = _types(resources, "kubernetes:keda.sh/*:ScaledObject")
    budgets = _types(resources, "kubernetes:policy/*:PodDisruptionBudget")
    for deployment in _types(resources, "kubernetes:apps/*:Deployment"):
        # A team stack is production when it or the platform stack it reads is (environment_stacks).
        if not config.is_production(*environment_stacks(resources, deployment.stack)):
            continue
        templates = pod_templates(mapping(deployment.props))
        pod_labels = templates[0][1] if templates else {}
        own_labels = mapping(metadata(deployment.props).get("labels"))
        if MODEL_SERVICE not in (own_labels.get(COMPONENT_LABEL), pod_labels.get(COMPONENT_LABEL)):
            continue
        replicas, source = _min_replicas(deployment, scaled_objects)
        if replicas is not None and replicas < MIN_PRODUCTION_REPLICAS:
            yield deployment, Finding(
                f"{source} is {replicas}: a production model service needs at least {MIN_PRODUCTION_REPLICAS} replicas",
                f"Set replicas (or autoscale.minReplicas) to {MIN_PRODUCTION_REPLICAS} or more.",
            )
        namespace = name_in(deployment.props, "namespace")
        if not any(_budget_may_cover(b, namespace, pod_labels) for b in budgets):
            yield deployment, Finding(
                f"no PodDisruptionBudget in namespace {namespace} selects the pods of spec.template.metadata.labels",
                "Add a PodDisruptionBudget (maxUnavailable: 1) whose selector matches the Deployment's pod labels.",
            )


MODEL_SERVICE_AVAILABILITY = StackRule(
    name="model-service-availability",
    description="Model services in production stacks (productionStacks patterns, on the stack's own name or the "
    "platform stack it reads by StackReference) run at least 2 replicas and have a PodDisruptionBudget.",
    level=ADVISORY,
    check=check_model_service_availability,
    opt_out="advisory: set replicas (or autoscale.minReplicas) to 2 or more; productionStacks in the pack config "
    "says which stacks are production.",
    config_keys=("productionStacks",),
)
