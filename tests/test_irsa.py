"""IRSA roles: only the one service account named may assume the role (sub and aud pinned)."""

from __future__ import annotations

import json

from conftest import run_components

from components.platform.irsa import ServiceAccountRole, trust_policy

PROVIDER = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC"
ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/ABC"


def test_trust_policy_pins_subject_and_audience():
    """The trust policy federates the cluster's OIDC provider and requires this exact sub and the STS aud."""
    policy = json.loads(trust_policy(PROVIDER, ISSUER, "kube-system", "cluster-autoscaler"))
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Federated": PROVIDER}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {"StringEquals": {
        "oidc.eks.us-west-2.amazonaws.com/id/ABC:sub": "system:serviceaccount:kube-system:cluster-autoscaler",
        "oidc.eks.us-west-2.amazonaws.com/id/ABC:aud": "sts.amazonaws.com",
    }}


def test_service_account_role_creates_role_inline_policy_and_attachments():
    """The component makes the role with that trust policy, its inline policy and each managed attachment."""
    inline = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]})

    def build():
        ServiceAccountRole("ca", oidc_provider_arn=PROVIDER, oidc_issuer_url=ISSUER, namespace="kube-system",
                           service_account="cluster-autoscaler", policy=inline,
                           managed_policy_arns={"ebs": "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"})

    resources = run_components(build)
    assert {n: r["type"] for n, r in resources.items()} == {
        "ca": "cloudml:platform:ServiceAccountRole",
        "ca-role": "aws:iam/role:Role",
        "ca-policy": "aws:iam/rolePolicy:RolePolicy",
        "ca-ebs": "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
    }
    role = resources["ca-role"]
    assert json.loads(role["inputs"]["assumeRolePolicy"]) == json.loads(trust_policy(PROVIDER, ISSUER, "kube-system", "cluster-autoscaler"))
    assert json.loads(resources["ca-policy"]["inputs"]["policy"]) == json.loads(inline)
    assert resources["ca-ebs"]["inputs"]["policyArn"] == "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"


def test_role_name_prefix_fits_iam_limits_for_the_longest_names():
    """IAM names stop at 64 and prefixes at 38: the longest platform (32) and team (24) names still fit,
    and two long names that share their first 28 characters stay distinct."""
    from components.platform.irsa import role_name_prefix

    long_a = f"{'p' * 32}-tenancy-{'t' * 24}-irsa-role"
    long_b = f"{'p' * 32}-tenancy-{'t' * 23}u-irsa-role"
    assert len(role_name_prefix(long_a)) <= 38 and len(role_name_prefix(long_b)) <= 38
    assert role_name_prefix(long_a) != role_name_prefix(long_b)
    assert role_name_prefix("ca-role") == "ca-role-"
