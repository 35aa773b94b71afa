"""IAM policy documents of the cluster add-ons (pure functions; the IRSA roles attach them).

- Cluster Autoscaler: the least-privilege policy of the autoscaler's AWS README: read-only
  Describe* on `*`, and the two write actions (SetDesiredCapacity, TerminateInstanceInAutoScalingGroup)
  only on Auto Scaling groups tagged as this cluster's. EKS tags every managed node group's ASG with
  `k8s.io/cluster-autoscaler/enabled=true` and `k8s.io/cluster-autoscaler/<cluster>=owned`, so the
  autoscaler can resize this cluster's groups and no other ASG in the account.
- AWS Load Balancer Controller: the controller's own policy for the pinned version, loaded from
  `data/` unmodified (see data/SOURCES.md), then hardened by `harden_lb_controller_policy`: upstream
  grants five sets of writes on `"Resource": "*"` with no Condition (kubernetes-sigs/
  aws-load-balancer-controller#1647); cloudml scopes them to this account, region and VPC, and to
  resources the controller tagged, and drops the WAF/Shield writes (the platform offers neither).
"""

from __future__ import annotations

import copy
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


# WAF and Shield writes: only for the Ingress annotations wafv2-acl-arn / waf-acl-id / shield-advanced-
# protection and the NLB shield annotation. cloudml exposes services through NLBs without WAF or
# Shield and turns the features off in the chart (addons.lb_controller_values); the reads stay.
LBC_WAF_SHIELD_WRITES = frozenset({
    "waf-regional:AssociateWebACL", "waf-regional:DisassociateWebACL",
    "wafv2:AssociateWebACL", "wafv2:DisassociateWebACL",
    "shield:CreateProtection", "shield:DeleteProtection",
    "elasticloadbalancing:SetWebAcl",
})
# Writes on listeners and rules. The controller tags both with elbv2.k8s.aws/cluster (tracking tags,
# feature gate ListenerRulesTagging, on by default; it re-tags an untagged listener before modifying
# it) and CreateListener/CreateRule authorize against the tagged load balancer/listener.
LBC_LISTENER_WRITES = frozenset({
    "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:ModifyListener", "elasticloadbalancing:AddListenerCertificates",
    "elasticloadbalancing:RemoveListenerCertificates", "elasticloadbalancing:CreateRule",
    "elasticloadbalancing:DeleteRule", "elasticloadbalancing:ModifyRule", "elasticloadbalancing:SetRulePriorities",
})
LBC_SG_INGRESS_WRITES = frozenset({"ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"})
LBC_CLUSTER_TAG = "elbv2.k8s.aws/cluster"
_READ_VERBS = ("Describe", "Get", "List")


def _actions(statement: dict) -> list[str]:
    granted = statement["Action"]
    return [granted] if isinstance(granted, str) else list(granted)


def harden_lb_controller_policy(document: dict, *, partition: str, region: str, account_id: str,
                                vpc_id: str) -> dict:
    """The controller's upstream policy with its unscoped writes (Allow on `"*"`, no Condition) scoped:

    - WAF/Shield writes dropped (their reads kept);
    - Authorize/RevokeSecurityGroupIngress only on security groups of the cluster VPC (`ec2:Vpc`; the
      controller opens node/pod groups to its load balancers, groups it did not create or tag);
    - CreateSecurityGroup only in the cluster VPC and only with the cluster tag in the request (EC2
      authorizes the new group and the VPC separately, and the new group has no `ec2:Vpc` key, so
      two statements);
    - listener and rule writes only on resources carrying the cluster tag.

    Every other statement is returned unchanged. Any unscoped statement this function does not know
    (a new upstream version) is an error, so a version bump cannot silently bring back writes on "*".
    """
    ec2 = f"arn:{partition}:ec2:{region}:{account_id}"
    vpc_arn = f"{ec2}:vpc/{vpc_id}"
    statements: list[dict] = []
    hardened: set[str] = set()
    for original in document["Statement"]:
        statement = copy.deepcopy(original)
        if not (statement.get("Effect") == "Allow" and statement.get("Resource") == "*" and "Condition" not in statement):
            statements.append(statement)
            continue
        actions = [a for a in _actions(statement) if a not in LBC_WAF_SHIELD_WRITES]
        if len(actions) < len(_actions(statement)):
            hardened.add("waf-shield")
        statement["Action"] = actions
        if all(a.partition(":")[2].startswith(_READ_VERBS) for a in actions):
            statements.append(statement)
        elif set(actions) == LBC_SG_INGRESS_WRITES:
            hardened.add("sg-ingress")
            statements.append({**statement, "Resource": f"{ec2}:security-group/*",
                               "Condition": {"ArnEquals": {"ec2:Vpc": vpc_arn}}})
        elif actions == ["ec2:CreateSecurityGroup"]:
            hardened.add("sg-create")
            statements.append({**statement, "Resource": f"{ec2}:security-group/*",
                               "Condition": {"Null": {f"aws:RequestTag/{LBC_CLUSTER_TAG}": "false"}}})
            statements.append({**statement, "Resource": vpc_arn})
        elif set(actions) <= LBC_LISTENER_WRITES:
            hardened.add("listeners")
            statements.append({**statement, "Condition": {"Null": {f"aws:ResourceTag/{LBC_CLUSTER_TAG}": "false"}}})
        else:
            raise ValueError(f"the LB controller policy has an unreviewed write on Resource \"*\": {actions}; "
                             "review harden_lb_controller_policy for the new controller version")
    missing = {"waf-shield", "sg-ingress", "sg-create", "listeners"} - hardened
    if missing:  # upstream changed shape: the hardening no longer describes the file
        raise ValueError(f"the LB controller policy no longer has the statements hardened as {sorted(missing)}; "
                         "review harden_lb_controller_policy for the new controller version")
    return {**document, "Statement": statements}


def lb_controller_policy(*, partition: str, region: str, account_id: str, vpc_id: str) -> str:
    """The controller's hardened policy as an inline role policy: compact JSON (a role's inline
    policies may hold 10,240 characters in all; the file's indentation alone would use a third)."""
    document = harden_lb_controller_policy(lb_controller_policy_document(), partition=partition, region=region,
                                           account_id=account_id, vpc_id=vpc_id)
    return json.dumps(document, separators=(",", ":"))


def policy_actions(document: dict) -> set[str]:
    """Every action an Allow statement of `document` grants (for tests and reviews)."""
    actions: set[str] = set()
    for statement in document["Statement"]:
        if statement["Effect"] == "Allow":
            granted = statement["Action"]
            actions.update([granted] if isinstance(granted, str) else granted)
    return actions
