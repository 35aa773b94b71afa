"""`iam-no-wildcards` (policies/rules/cloud_iam.py): a compliant policy, minimal mutations with the
exact message and fix pinned, every place a policy can be, and the write-action classification."""

from __future__ import annotations

import json

import pytest

from policies.core import PlannedResource
from policies.rules.cloud_iam import is_write_action
from test_policy_cloud import UNKNOWN, found, resource

# --- IAM ------------------------------------------------------------------------------------

SCALE_OWN_GROUPS = {"Sid": "ScaleOwnGroups", "Effect": "Allow", "Action": ["autoscaling:SetDesiredCapacity"], "Resource": "*",
                    "Condition": {"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/ml-dev": "owned"}}}
ACTION_STAR_FIX = 'List the actions the principal needs instead of "*".'
SCOPE_FIX = ("Name the resources (ARNs) the write actions apply to, or add a Condition that scopes them "
             '(StringEquals or Null "false" on aws:ResourceTag/..., aws:RequestTag/..., or ec2:Vpc).')
MANAGED_FIX = "Attach a policy that lists the actions and resources the principal needs."
DESCRIBE = {"Sid": "Describe", "Effect": "Allow", "Action": ["ec2:DescribeInstanceTypes", "eks:DescribeNodegroup"], "Resource": "*"}


def role_policy(*statements, as_dict: bool = False) -> list[PlannedResource]:
    document = {"Version": "2012-10-17", "Statement": list(statements)}
    return [resource("aws:iam/rolePolicy:RolePolicy", "ca-policy", {"role": "r", "policy": document if as_dict else json.dumps(document)})]


def test_iam_compliant_policy():
    assert found("iam-no-wildcards", role_policy(DESCRIBE, SCALE_OWN_GROUPS)) == []
    deny_all = {"Effect": "Deny", "Action": "*", "Resource": "*"}
    assert found("iam-no-wildcards", role_policy(deny_all, {**SCALE_OWN_GROUPS, "Resource": "arn:aws:autoscaling:*:*:autoScalingGroup:*"})) == []


def test_iam_action_star():
    assert found("iam-no-wildcards", role_policy(DESCRIBE, {"Effect": "Allow", "Action": "*", "Resource": "arn:aws:s3:::b"}, as_dict=True)) == [
        ("ca-policy", 'policy.Statement[1].Action is "*": it allows every action of every service', ACTION_STAR_FIX)]


@pytest.mark.parametrize("condition", [
    None,
    {"Bool": {"aws:SecureTransport": "true"}},  # not a scoping condition
    {"StringEqualsIfExists": {"aws:ResourceTag/owner": "me"}},  # holds when the tag is absent
])
def test_iam_write_on_every_resource_without_scoping_condition(condition):
    statement = {k: v for k, v in SCALE_OWN_GROUPS.items() if k != "Condition"}
    if condition:
        statement["Condition"] = condition
    assert found("iam-no-wildcards", role_policy(statement)) == [("ca-policy", (
        "policy.Statement[0] (ScaleOwnGroups) allows write actions autoscaling:SetDesiredCapacity on Resource \"*\" "
        "without a Condition that scopes them"), SCOPE_FIX)]


def test_iam_wildcard_forms():
    statements = [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::*/*"},
        {"Effect": "Allow", "NotAction": ["iam:*"], "Resource": "*"},
        {"Effect": "Allow", "Action": "ec2:Create*", "NotResource": "arn:aws:ec2:*:*:vpc/*"},
        {"Effect": "Allow", "Action": "ec2:Describe*", "Resource": "*"},
    ]
    assert [m for _, m, _ in found("iam-no-wildcards", role_policy(*statements))] == [
        'policy.Statement[0] allows write actions s3:* on Resource "arn:aws:s3:::*/*" without a Condition that scopes them',
        'policy.Statement[1] allows every action but NotAction iam:* on Resource "*" without a Condition that scopes them',
        "policy.Statement[2] allows write actions ec2:Create* on NotResource (every resource but those listed) "
        "without a Condition that scopes them",
    ]


def test_iam_role_inline_policies_and_managed_policies():
    inline = json.dumps({"Statement": [{"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": ["*"]}]})
    trust = json.dumps({"Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "*"}]})
    role = resource("aws:iam/role:Role", "app-role", {
        "assumeRolePolicy": trust,  # a trust policy: not checked
        "inlinePolicies": [{"name": "writer", "policy": inline}],
        "managedPolicyArns": ["arn:aws:iam::aws:policy/AmazonS3FullAccess", "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"],
    })
    admin = resource("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "admin",
                     {"role": "r", "policyArn": "arn:aws:iam::aws:policy/AdministratorAccess"})
    assert found("iam-no-wildcards", [role, admin]) == [
        ("app-role", 'inlinePolicies[0] (writer).policy.Statement[0] allows write actions s3:PutObject on Resource "*" '
                     "without a Condition that scopes them", SCOPE_FIX),
        ("app-role", 'managedPolicyArns[0] attaches the AWS managed policy AmazonS3FullAccess, which allows every action of its service on "*"',
         MANAGED_FIX),
        ("admin", 'policyArn attaches the AWS managed policy AdministratorAccess, which allows every action ("Action": "*")',
         MANAGED_FIX),
    ]


def test_iam_unknown_or_malformed_policy_is_skipped():
    for policy in (UNKNOWN, "not json", None, 42):
        assert found("iam-no-wildcards", [resource("aws:iam/policy:Policy", "p", {"policy": policy})]) == []


@pytest.mark.parametrize(("action", "write"), [
    ("s3:PutObject", True), ("s3:*", True), ("s3:*Object", True), ("ec2:De*", True), ("iam:PassRole", True),
    ("dynamodb:BatchWriteItem", True), ("cognito-idp:AdminCreateUser", True), ("sts:AssumeRole", True), ("*", True),
    ("s3:GetObject", False), ("ec2:Describe*", False), ("dynamodb:BatchGetItem", False), ("cognito-idp:AdminGetUser", False),
    ("kms:Decrypt", False), ("s3:List*", False), ("S3:PUTOBJECT", True),
])
def test_write_actions(action, write):
    assert is_write_action(action) is write




@pytest.mark.parametrize(("action", "condition"), [
    ("iam:*", {"StringNotEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}),  # negated: every other service
    ("s3:*", {"Null": {"s3:prefix": "true"}}),  # the key must be absent: scopes nothing
    ("s3:*", {"StringLike": {"aws:ResourceTag/x": "*"}}),  # "*" matches any tag value
    ("ec2:*", {"StringEquals": {"ec2:Region": "us-west-2"}}),  # a region is not a resource scope
    ("iam:*", {"StringEquals": {"aws:ResourceAccount": "111122223333"}}),  # the own account: everything it reaches
    ("iam:*", {"StringEquals": {"aws:ResourceOrgID": "o-abc"}}),
    ("ec2:*", {"Null": {"aws:ResourceTag/owner": "true"}}),  # untagged resources
    ("ec2:*", {"ForAnyValue:StringEquals": {"aws:TagKeys": ["owner"]}}),
    ("ec2:*", {"StringNotLike": {"aws:ResourceTag/owner": "other"}}),
])
def test_iam_conditions_that_do_not_scope_a_write_on_every_resource(action, condition):
    statement = {"Effect": "Allow", "Action": action, "Resource": "*", "Condition": condition}
    assert found("iam-no-wildcards", role_policy(statement)) == [("ca-policy", (
        f'policy.Statement[0] allows write actions {action} on Resource "*" without a Condition that scopes them'), SCOPE_FIX)]


@pytest.mark.parametrize("condition", [
    {"StringEquals": {"aws:ResourceTag/k8s.io/cluster-autoscaler/ml-dev": "owned"}},
    {"StringLike": {"aws:RequestTag/team": "vision-*"}},
    {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}},
    {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": False}},
    {"ArnEquals": {"ec2:Vpc": "arn:aws:ec2:us-west-2:111122223333:vpc/vpc-1"}},
    {"StringEquals": {"ec2:CreateAction": "CreateSecurityGroup"}},
    {"StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}},
    UNKNOWN,  # a document built from outputs during preview: not judged
])
def test_iam_conditions_that_scope_a_write_on_every_resource(condition):
    statement = {"Effect": "Allow", "Action": "ec2:CreateTags", "Resource": "*", "Condition": condition}
    assert found("iam-no-wildcards", role_policy(statement, as_dict=True)) == []
