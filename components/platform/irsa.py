"""IAM roles for Kubernetes service accounts (IRSA), scoped to exactly one service account.

`trust_policy` is the pure policy document (tested on its own); `ServiceAccountRole` creates the role
and attaches inline or managed policies. The trust condition pins both `sub` (the one
`system:serviceaccount:<namespace>:<name>`) and `aud` (`sts.amazonaws.com`), so no other pod in the
cluster — not even one in the same namespace — can assume the role.
"""

from __future__ import annotations

import hashlib
import json

import pulumi
import pulumi_aws as aws


def issuer_host(issuer_url: str) -> str:
    """`https://oidc.eks.<region>.amazonaws.com/id/X` -> `oidc.eks.<region>.amazonaws.com/id/X`."""
    return issuer_url.removeprefix("https://")


def role_name_prefix(logical_name: str) -> str:
    """A name prefix of at most 38 characters (IAM's limit) that stays recognizable and unique."""
    if len(logical_name) + 1 <= 38:
        return f"{logical_name}-"
    digest = hashlib.sha256(logical_name.encode()).hexdigest()[:8]
    return f"{logical_name[:28]}-{digest}-"


def trust_policy(provider_arn: str, issuer_url: str, namespace: str, service_account: str) -> str:
    """The role trust policy allowing only this service account's web identity token."""
    host = issuer_host(issuer_url)
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": provider_arn},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                f"{host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                f"{host}:aud": "sts.amazonaws.com",
            }},
        }],
    }, sort_keys=True)


class ServiceAccountRole(pulumi.ComponentResource):
    """Creates `<name>-role` (an IAM role only `namespace/service_account` can assume), `<name>-policy`
    (its inline policy, when given) and `<name>-<key>` (attachments of managed policies).

    Outputs: `arn`, `name`.
    """

    def __init__(
        self,
        name: str,
        *,
        oidc_provider_arn: pulumi.Input[str],
        oidc_issuer_url: pulumi.Input[str],
        namespace: str,
        service_account: str,
        policy: pulumi.Input[str] | None = None,
        managed_policy_arns: dict[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("cloudml:platform:ServiceAccountRole", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        assume = pulumi.Output.all(oidc_provider_arn, oidc_issuer_url).apply(
            lambda args: trust_policy(args[0], args[1], namespace, service_account)
        )
        self.role = aws.iam.Role(
            f"{name}-role",
            # IAM role names stop at 64 characters; AWS completes a prefix of at most 38 with a
            # unique suffix, so long platform and team names still make valid role names.
            name_prefix=role_name_prefix(f"{name}-role"),
            assume_role_policy=assume,
            description=f"IRSA role of service account {namespace}/{service_account}",
            opts=child,
        )
        self.inline_policy = (
            aws.iam.RolePolicy(f"{name}-policy", role=self.role.id, policy=policy, opts=child) if policy is not None else None
        )
        self.attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-{key}", role=self.role.name, policy_arn=arn, opts=child)
            for key, arn in (managed_policy_arns or {}).items()
        ]
        self.arn = self.role.arn
        self.name = self.role.name
        self.register_outputs({"arn": self.arn, "name": self.name})
