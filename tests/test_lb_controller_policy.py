"""The AWS Load Balancer Controller's IAM policy: the upstream file, read unmodified, and the
hardening cloudml applies on top (components/platform/addon_policies.harden_lb_controller_policy).

Pinned: every transformed statement exactly, every other statement unchanged, the result passes
`iam-no-wildcards` where upstream fails it five times, and an upstream file of another shape is an
error rather than a silently unhardened policy. The wiring (Output inputs under the mocks, chart
values) is in test_addons.py::test_lb_controller_policy_is_the_official_one_and_wired.
"""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

from components.platform.addon_policies import (
    DATA_DIR,
    LBC_WAF_SHIELD_WRITES,
    harden_lb_controller_policy,
    lb_controller_policy,
    lb_controller_policy_document,
)
from components.platform.versions import LB_CONTROLLER_POLICY_FILE
from policies.core import PlannedResource, evaluate
from policies.rules.cloud import RULES

# The file as vendored from upstream v2.12.0 (data/SOURCES.md). A different digest means someone
# edited it or moved the version: edits belong in harden_lb_controller_policy, not in the file.
UPSTREAM_SHA256 = "05780d548cae2d0ef012988ec1053e7733011c2a0415a7ca02c363907e455016"
# Not the `aws` partition nor the sample's region, so the ARNs are seen to come from the arguments.
WHERE = {"partition": "aws-us-gov", "region": "us-gov-west-1", "account_id": "444455556666",
         "vpc_id": "vpc-0a1b2c3d4e5f60718"}
EC2 = "arn:aws-us-gov:ec2:us-gov-west-1:444455556666"
VPC_ARN = f"{EC2}:vpc/vpc-0a1b2c3d4e5f60718"
TAGGED = {"Null": {"aws:ResourceTag/elbv2.k8s.aws/cluster": "false"}}
# Upstream statement index -> the statements cloudml puts in its place.
EXPECTED = {
    2: [{"Effect": "Allow", "Resource": "*", "Action": [
        "cognito-idp:DescribeUserPoolClient", "acm:ListCertificates", "acm:DescribeCertificate",
        "iam:ListServerCertificates", "iam:GetServerCertificate", "waf-regional:GetWebACL",
        "waf-regional:GetWebACLForResource", "wafv2:GetWebACL", "wafv2:GetWebACLForResource",
        "shield:GetSubscriptionState", "shield:DescribeProtection"]}],
    3: [{"Effect": "Allow", "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
         "Resource": f"{EC2}:security-group/*", "Condition": {"ArnEquals": {"ec2:Vpc": VPC_ARN}}}],
    4: [{"Effect": "Allow", "Action": ["ec2:CreateSecurityGroup"], "Resource": f"{EC2}:security-group/*",
         "Condition": {"Null": {"aws:RequestTag/elbv2.k8s.aws/cluster": "false"}}},
        {"Effect": "Allow", "Action": ["ec2:CreateSecurityGroup"], "Resource": VPC_ARN}],
    9: [{"Effect": "Allow", "Resource": "*", "Condition": TAGGED, "Action": [
        "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
        "elasticloadbalancing:CreateRule", "elasticloadbalancing:DeleteRule"]}],
    15: [{"Effect": "Allow", "Resource": "*", "Condition": TAGGED, "Action": [
        "elasticloadbalancing:ModifyListener", "elasticloadbalancing:AddListenerCertificates",
        "elasticloadbalancing:RemoveListenerCertificates", "elasticloadbalancing:ModifyRule",
        "elasticloadbalancing:SetRulePriorities"]}],
}


def upstream() -> dict:
    return copy.deepcopy(lb_controller_policy_document())


def iam_findings(document: dict) -> list[str]:
    policy = PlannedResource("aws:iam/rolePolicy:RolePolicy", "lbc", "urn:lbc", {"policy": json.dumps(document)},
                             False, False, None)
    return [v.message for v in evaluate([r for r in RULES if r.name == "iam-no-wildcards"], [policy])]


def test_upstream_file_is_read_unmodified():
    """The data file is the vendored upstream bytes, and the loader returns exactly its content."""
    raw = (DATA_DIR / LB_CONTROLLER_POLICY_FILE).read_bytes()
    assert hashlib.sha256(raw).hexdigest() == UPSTREAM_SHA256
    assert lb_controller_policy_document() == json.loads(raw)


def test_hardened_statements_exactly():
    """Upstream statements 2, 3, 4, 9 and 15 become EXPECTED; every other statement is unchanged."""
    original = upstream()
    hardened = harden_lb_controller_policy(original, **WHERE)
    expected = []
    for i, statement in enumerate(original["Statement"]):
        expected.extend(EXPECTED.get(i, [statement]))
    assert hardened == {"Version": "2012-10-17", "Statement": expected}
    assert len(hardened["Statement"]) == len(original["Statement"]) + 1  # CreateSecurityGroup: two statements
    assert original == lb_controller_policy_document()  # the input (and the cached file) is not mutated


def test_waf_and_shield_writes_are_gone_and_nothing_else_is():
    """Only the WAF/Shield writes leave the policy; every other action is still granted."""
    def granted(document: dict) -> set[str]:
        return {a for s in document["Statement"] for a in s["Action"]}

    before, after = granted(upstream()), granted(harden_lb_controller_policy(upstream(), **WHERE))
    assert before - after == LBC_WAF_SHIELD_WRITES
    assert after <= before


def test_hardened_policy_passes_iam_no_wildcards():
    """Upstream allows five sets of writes on "*" without a Condition; the hardened policy none."""
    assert len(iam_findings(upstream())) == 5
    assert iam_findings(harden_lb_controller_policy(upstream(), **WHERE)) == []


def test_inline_policy_is_compact_and_fits_a_role():
    """The role policy is the hardened document as compact JSON, within IAM's 10,240 characters."""
    text = lb_controller_policy(**WHERE)
    assert text == json.dumps(harden_lb_controller_policy(upstream(), **WHERE), separators=(",", ":"))
    assert len(text) < 10_240


def test_unreviewed_write_on_star_is_an_error():
    """A new upstream statement with writes on "*" and no Condition fails loudly, so a version bump
    cannot bring back unscoped writes unnoticed."""
    document = upstream()
    document["Statement"].append({"Effect": "Allow", "Action": ["ec2:DeleteSecurityGroup"], "Resource": "*"})
    with pytest.raises(ValueError, match=r"unreviewed write on Resource \"\*\": \['ec2:DeleteSecurityGroup'\]"):
        harden_lb_controller_policy(document, **WHERE)


def _scope(document: dict, *indices: int) -> None:
    for i in indices:
        document["Statement"][i]["Condition"] = {"StringEquals": {"aws:ResourceAccount": "444455556666"}}


def _drop_waf_shield(document: dict) -> None:
    for statement in document["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a not in LBC_WAF_SHIELD_WRITES]


@pytest.mark.parametrize("change,part", [
    (_drop_waf_shield, "waf-shield"),
    (lambda d: _scope(d, 3), "sg-ingress"),
    (lambda d: _scope(d, 4), "sg-create"),
    (lambda d: _scope(d, 9, 15), "listeners"),
])
def test_upstream_of_another_shape_is_an_error(change, part):
    """When upstream scopes or drops a statement itself, the hardening no longer describes the
    file: review it rather than ship a policy nobody read."""
    document = upstream()
    change(document)
    with pytest.raises(ValueError, match=rf"hardened as \['{part}'\]"):
        harden_lb_controller_policy(document, **WHERE)
