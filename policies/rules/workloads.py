"""The pack's Kubernetes rules, in the order their findings are reported: what runs in pods
(`workloads_pods`, `workloads_images`), then how workloads are reached and kept running
(`workloads_services`)."""

from __future__ import annotations

from policies.core import Rule
from policies.rules.workloads_images import IMAGE_PINNED_FROM_ALLOWED_REGISTRY
from policies.rules.workloads_pods import DEV_ENVIRONMENT_IDLE_CULLING, GPU_RESOURCES, POD_SECURITY_RESTRICTED
from policies.rules.workloads_services import (
    LOAD_BALANCER_INTERNAL, MODEL_SERVICE_AVAILABILITY, TEAM_NAMESPACE_GPU_QUOTA,
)

RULES: list[Rule] = [
    POD_SECURITY_RESTRICTED,
    GPU_RESOURCES,
    IMAGE_PINNED_FROM_ALLOWED_REGISTRY,
    LOAD_BALANCER_INTERNAL,
    TEAM_NAMESPACE_GPU_QUOTA,
    DEV_ENVIRONMENT_IDLE_CULLING,
    MODEL_SERVICE_AVAILABILITY,
]
