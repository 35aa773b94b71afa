"""IAM policy documents of the cluster add-ons (pure functions; the IRSA roles attach them).

- Cluster Autoscaler: the least-privilege policy of the autoscaler's AWS README: read-only
  Describe* on `*`, and the two write actions (SetDesiredCapacity, TerminateInstanceInAutoScalingGroup)
  only on Auto Scaling groups tagged as this cluster's. EKS tags every managed node group's ASG with
  `k8s.io/cluster-autoscaler/enabled=true` and `k8s.io/cluster-autoscaler/<cluster>=owned`, so the
  autoscaler can resize this cluster's groups and no other ASG in the account.
- AWS Load Balancer Controller: the controller's own policy for the pinned version, loaded from
  `data/` unmodified (see data/SOURCES.md).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from components.platform.versions import LB_CONTROLLER_POLICY_FILE

DATA_DIR = Path(__file__).resolve().parent / "data"

AUTOSCALER_READ_ACTIONS = [
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:DescribeAutoScalingInstances",
    "autoscaling:DescribeLaunchConfigurations",
    "autoscaling:DescribeScalingActivities",
    "autoscaling:DescribeTags",
    "ec2:DescribeImages",
    "ec2:DescribeInstanceTypes",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:GetInstanceTypesFromInstanceRequirements",
    "eks:DescribeNodegroup",
]
AUTOSCALER_WRITE_ACTIONS = [
    "autoscaling:SetDesiredCapacity",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
]


def autoscaler_ownership_condition(cluster_name: str) -> dict:
    """The tags an ASG must carry for the autoscaler to resize it (set by EKS on managed groups)."""
    return {"StringEquals": {
        "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
        f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned",
    }}


def cluster_autoscaler_policy(cluster_name: str) -> str:
    """The Cluster Autoscaler's inline policy for `cluster_name` (JSON)."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "Describe", "Effect": "Allow", "Action": AUTOSCALER_READ_ACTIONS, "Resource": "*"},
            {
                "Sid": "ScaleOwnGroups",
                "Effect": "Allow",
                "Action": AUTOSCALER_WRITE_ACTIONS,
                "Resource": "*",
                "Condition": autoscaler_ownership_condition(cluster_name),
            },
        ],
    }, sort_keys=True)


@lru_cache(maxsize=1)
def lb_controller_policy_document() -> dict:
    """The AWS Load Balancer Controller's official policy for the pinned controller version."""
    return json.loads((DATA_DIR / LB_CONTROLLER_POLICY_FILE).read_text(encoding="utf-8"))


def lb_controller_policy() -> str:
    """The controller's policy as an inline role policy: compact JSON (a role's inline policies may
    hold 10,240 characters in all; the file's indentation alone would use a third of that)."""
    return json.dumps(lb_controller_policy_document(), separators=(",", ":"))


def policy_actions(document: dict) -> set[str]:
    """Every action an Allow statement of `document` grants (for tests and reviews)."""
    actions: set[str] = set()
    for statement in document["Statement"]:
        if statement["Effect"] == "Allow":
            granted = statement["Action"]
            actions.update([granted] if isinstance(granted, str) else granted)
    return actions
