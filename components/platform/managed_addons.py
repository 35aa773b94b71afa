"""EKS managed add-ons: the arguments they all share, and an add-on with an IRSA role of its own."""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from components.platform.irsa import ServiceAccountRole


def addon_args(name: str) -> dict:
    """Arguments every EKS managed add-on of the platform shares.

    addon_version is left unset: EKS installs the default version for the cluster's Kubernetes
    version. OVERWRITE on create adopts the self-managed copies EKS bootstraps with a new cluster
    (vpc-cni, kube-proxy, coredns); OVERWRITE on update puts hand edits back to the declared config.
    """
    return {"addon_name": name, "resolve_conflicts_on_create": "OVERWRITE", "resolve_conflicts_on_update": "OVERWRITE"}


def addon_with_role(
    addon_name: str,
    name: str,
    *,
    parent: pulumi.Resource,
    cluster_name: pulumi.Input[str],
    oidc_provider_arn: pulumi.Input[str],
    oidc_issuer_url: pulumi.Input[str],
    service_account: tuple[str, str],
    after: Sequence[pulumi.Resource] = (),
    policy: pulumi.Input[str] | None = None,
    managed_policy_arns: dict[str, str] | None = None,
    **addon_extra,
) -> tuple[ServiceAccountRole, aws.eks.Addon]:
    """Creates `<name>-irsa` (a role only `service_account` = (namespace, name) can assume) and `<name>`
    (the add-on running as that role). The add-on waits for `after` (e.g. nodes, for add-ons whose
    controller is a Deployment) and for the role, whose policies must exist before the driver uses it."""
    namespace, account = service_account
    role = ServiceAccountRole(
        f"{name}-irsa",
        oidc_provider_arn=oidc_provider_arn,
        oidc_issuer_url=oidc_issuer_url,
        namespace=namespace,
        service_account=account,
        policy=policy,
        managed_policy_arns=managed_policy_arns,
        opts=pulumi.ResourceOptions(parent=parent),
    )
    addon = aws.eks.Addon(
        name,
        cluster_name=cluster_name,
        service_account_role_arn=role.arn,
        **addon_args(addon_name),
        **addon_extra,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[*after, role]),
    )
    return role, addon
