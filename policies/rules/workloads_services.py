"""Rules over how team workloads are reached and kept running: LoadBalancer Services are internal
unless explicitly internet-facing with source ranges, team namespaces have a GPU quota, and model
services of production stacks survive a node drain (replicas and a PodDisruptionBudget).
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Iterator

from components.labels import GPU_RESOURCE, TEAM_LABEL
from policies.core import (
    ADVISORY, MANDATORY, Finding, PlannedResource, PolicyConfig, ResourceRule, StackRule,
)
from policies.rules.workloads_pods import COMPONENT_LABEL, as_dict, as_list, metadata, name_in, pod_templates, selector_matches

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
    spec = as_dict(as_dict(resource.props).get("spec"))
    if spec.get("type") != "LoadBalancer":
        return
    annotations = as_dict(metadata(resource.props).get("annotations"))
    field = f'metadata.annotations["{SCHEME_ANNOTATION}"]'
    scheme = annotations.get(SCHEME_ANNOTATION)
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
    ranges = as_list(spec.get("loadBalancerSourceRanges"))
    if not ranges:
        yield Finding(f"spec.loadBalancerSourceRanges is empty on an {INTERNET_FACING} load balancer, "
                      "which then admits the whole internet", ranges_fix)
    for i, cidr in enumerate(ranges):
        try:
            network = ipaddress.ip_network(str(cidr).strip(), strict=False)
        except ValueError:
            yield Finding(f"spec.loadBalancerSourceRanges[{i}] {cidr} is not a CIDR", ranges_fix)
            continue
        if network.prefixlen == 0:
            yield Finding(f"spec.loadBalancerSourceRanges[{i}] is {cidr}, which admits the whole internet", ranges_fix)


LOAD_BALANCER_INTERNAL = ResourceRule(
    name="load-balancer-internal",
    description="LoadBalancer Services are internal, unless explicitly internet-facing with source ranges "
    "that exclude 0.0.0.0/0.",
    level=MANDATORY,
    types=("kubernetes:core/v1:Service",),
    check=check_load_balancer,
    opt_out=f"opt in per Service with {SCHEME_ANNOTATION}: {INTERNET_FACING} and spec.loadBalancerSourceRanges "
    "(cloudml: `expose: internet` with sourceCidrs, on a platform that allows internet-facing load balancers).",
)


# --- team-namespace-gpu-quota -------------------------------------------------------------------


def check_gpu_quota(resources: list[PlannedResource], config: PolicyConfig) -> Iterator[tuple[PlannedResource, Finding]]:
    quotas = _types(resources, "kubernetes:core/v1:ResourceQuota")
    for namespace in _types(resources, "kubernetes:core/v1:Namespace"):
        name = name_in(namespace.props, "name")
        labels = as_dict(metadata(namespace.props).get("labels"))
        if not name or not (name.startswith(config.team_namespace_prefix) or TEAM_LABEL in labels):
            continue
        hard_limits = [(name_in(q.props, "name"), as_dict(as_dict(as_dict(q.props).get("spec")).get("hard")))
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
    description=f"Every team namespace has a ResourceQuota that caps {GPU_QUOTA}.",
    level=MANDATORY,
    check=check_gpu_quota,
    opt_out="none: mandatory (cloudml's tenancy renders the quota from the team's gpuQuota).",
)


# --- model-service-availability ---------------------------------------------------------------


def _min_replicas(deployment: PlannedResource, scaled_objects: list[PlannedResource]) -> tuple[int, str]:
    """The fewest replicas the Deployment runs, and where that number comes from."""
    name, namespace = name_in(deployment.props, "name"), name_in(deployment.props, "namespace")
    for scaled in scaled_objects:
        target = as_dict(as_dict(as_dict(scaled.props).get("spec")).get("scaleTargetRef"))
        if (name_in(scaled.props, "namespace") == namespace and target.get("name") == name
                and target.get("kind", "Deployment") == "Deployment"):
            count = as_dict(as_dict(scaled.props).get("spec")).get("minReplicaCount", 0)  # KEDA's default is 0
            return (count if isinstance(count, int) else 0), f"ScaledObject {name_in(scaled.props, 'name')} spec.minReplicaCount"
    count = as_dict(as_dict(deployment.props).get("spec")).get("replicas", 1)  # Kubernetes' default is 1
    return (count if isinstance(count, int) else 0), "spec.replicas"


def check_model_service_availability(resources: list[PlannedResource], config: PolicyConfig) -> Iterator[tuple[PlannedResource, Finding]]:
    scaled_objects = _types(resources, "kubernetes:keda.sh/*:ScaledObject")
    budgets = _types(resources, "kubernetes:policy/*:PodDisruptionBudget")
    for deployment in _types(resources, "kubernetes:apps/*:Deployment"):
        if not config.is_production(deployment.stack):
            continue
        templates = pod_templates(as_dict(deployment.props))
        pod_labels = templates[0][1] if templates else {}
        own_labels = as_dict(metadata(deployment.props).get("labels"))
        if MODEL_SERVICE not in (own_labels.get(COMPONENT_LABEL), pod_labels.get(COMPONENT_LABEL)):
            continue
        replicas, source = _min_replicas(deployment, scaled_objects)
        if replicas < MIN_PRODUCTION_REPLICAS:
            yield deployment, Finding(
                f"{source} is {replicas}: a production model service needs at least {MIN_PRODUCTION_REPLICAS} replicas",
                f"Set replicas (or autoscale.minReplicas) to {MIN_PRODUCTION_REPLICAS} or more.",
            )
        namespace = name_in(deployment.props, "namespace")
        if not any(name_in(b.props, "namespace") == namespace
                   and selector_matches(as_dict(as_dict(b.props).get("spec")).get("selector"), pod_labels)
                   for b in budgets):
            yield deployment, Finding(
                f"no PodDisruptionBudget in namespace {namespace} selects the pods of spec.template.metadata.labels",
                "Add a PodDisruptionBudget (maxUnavailable: 1) whose selector matches the Deployment's pod labels.",
            )


MODEL_SERVICE_AVAILABILITY = StackRule(
    name="model-service-availability",
    description="Model services in production stacks run at least 2 replicas and have a PodDisruptionBudget.",
    level=ADVISORY,
    check=check_model_service_availability,
    opt_out="advisory: set replicas (or autoscale.minReplicas) to 2 or more; productionStacks in the pack config "
    "says which stacks are production.",
)
