"""The EKS control plane: KMS key for secrets, cluster IAM role, the cluster, admin access entries,
and a Kubernetes provider bound to it.

Secure by default: private endpoint unless CIDRs are listed, envelope encryption of Secrets with a
rotating KMS key, api/audit/authenticator logs, API authentication mode without the implicit
creator-admin; only `admins` from config get cluster-admin.
"""

from __future__ import annotations

import hashlib
import json
import re

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.spec import PlatformSpec

CONTROL_PLANE_LOGS = ["api", "audit", "authenticator"]
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service assume a role."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    })


def principal_key(arn: str) -> str:
    """A short stable name part for an IAM principal: its last path segment plus a hash of the ARN."""
    last = re.sub(r"[^a-z0-9-]", "-", arn.rsplit("/", 1)[-1].lower())[:30].strip("-")
    return f"{last}-{hashlib.sha256(arn.encode()).hexdigest()[:8]}"


def kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no long-lived credentials)."""
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{
            "name": cluster_name,
            "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "aws",
                "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"],
            }},
        }],
    }, sort_keys=True)


class Cluster(pulumi.ComponentResource):
    """Creates `<name>-secrets-key` (KMS, rotating), `<name>-role` + its policy attachment,
    `<name>-eks` (the cluster), `<name>-admin-<principal>` access entries with cluster-admin associations,
    and `<name>-k8s` (a Kubernetes provider for the cluster).

    Outputs: `cluster_name`, `endpoint`, `kubeconfig` (secret), `provider`.
    """

    def __init__(self, name: str, spec: PlatformSpec, subnet_ids: pulumi.Input, region: str,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.secrets_key = aws.kms.Key(
            f"{name}-secrets-key",
            description=f"Envelope encryption of Kubernetes Secrets in EKS cluster {spec.name}",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=child,
        )
        self.role = aws.iam.Role(f"{name}-role", assume_role_policy=assume_role_policy("eks.amazonaws.com"), opts=child)
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-role-policy",
            role=self.role.name,
            policy_arn="arn:aws:iam::aws:policy/AmazonEKSClusterPolicy",
            opts=child,
        )
        public_cidrs = [str(c) for c in spec.endpoint.public_access_cidrs]
        self.eks = aws.eks.Cluster(
            f"{name}-eks",
            name=spec.name,
            version=spec.kubernetes_version,
            role_arn=self.role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=bool(public_cidrs),
                public_access_cidrs=public_cidrs or None,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=self.secrets_key.arn),
                resources=["secrets"],
            ),
            enabled_cluster_log_types=CONTROL_PLANE_LOGS,
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cluster_policy]),
        )
        # What the Kubernetes provider needs before it can create anything: with no implicit
        # creator-admin, whoever runs `pulumi up` must be one of these admins.
        self.admin_access: list[pulumi.Resource] = []
        for principal in spec.admins:
            # Named by the principal, not its list position: removing one admin must not replace the others.
            key = principal_key(principal)
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{key}", cluster_name=self.eks.name, principal_arn=principal, type="STANDARD", opts=child
            )
            self.admin_access.append(aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{key}-policy",
                cluster_name=self.eks.name,
                principal_arn=principal,
                policy_arn=CLUSTER_ADMIN_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
            ))
        self.cluster_name = self.eks.name
        self.endpoint = self.eks.endpoint
        self.kubeconfig = pulumi.Output.secret(pulumi.Output.all(
            self.eks.name, self.eks.endpoint, self.eks.certificate_authority.data
        ).apply(lambda args: kubeconfig(args[0], args[1], args[2], region)))
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=child)
        self.register_outputs({"cluster_name": self.cluster_name, "endpoint": self.endpoint, "kubeconfig": self.kubeconfig})
