"""The EKS control plane: KMS key for secrets, cluster IAM role, the cluster, admin access entries,
the IAM OIDC provider for IRSA, the add-ons that need no nodes (vpc-cni, kube-proxy), and a
Kubernetes provider bound to it. The add-ons that do need nodes are `cluster_addons.ClusterAddons`.

Secure by default: private endpoint unless CIDRs are listed, envelope encryption of Secrets with a
rotating KMS key, api/audit/authenticator logs, API authentication mode without the implicit
creator-admin; only `admins` from config get cluster-admin. The VPC CNI gets its AWS permissions from
its own IRSA role (kube-system/aws-node only), not from every pod on the node.
"""

from __future__ import annotations

import hashlib
import json
import re

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.platform.managed_addons import addon_args, addon_with_role
from components.spec import PlatformSpec

CONTROL_PLANE_LOGS = ["api", "audit", "authenticator"]
CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
# The audience of the projected service-account tokens that STS accepts (AssumeRoleWithWebIdentity).
STS_AUDIENCE = "sts.amazonaws.com"
# The VPC CNI's service account and the AWS managed policy it needs on an IPv4 cluster
# (EKS user guide, "Configure Amazon VPC CNI plugin to use IRSA").
VPC_CNI_SERVICE_ACCOUNT = ("kube-system", "aws-node")
VPC_CNI_POLICY = "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"


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


def kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str, aws_profile: str | None = None) -> str:
    """A kubeconfig that authenticates with `aws eks get-token` (no long-lived credentials), as the
    stack's AWS profile when it sets one, so Kubernetes sees the principal that is in `admins`."""
    exec_config: dict = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": "aws",
        "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region, "--output", "json"],
    }
    if aws_profile:
        exec_config["env"] = [{"name": "AWS_PROFILE", "value": aws_profile}]
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "current-context": cluster_name,
        "users": [{
            "name": cluster_name,
            "user": {"exec": exec_config},
        }],
    }, sort_keys=True)


class Cluster(pulumi.ComponentResource):
    """Creates `<name>-secrets-key` (KMS, rotating), `<name>-role` + its policy attachment,
    `<name>-eks` (the cluster), `<name>-admin-<principal>` access entries with cluster-admin associations,
    `<name>-oidc` (the IAM OIDC provider of the cluster's issuer, for IRSA), `<name>-vpc-cni-irsa`
    (IRSA role of kube-system/aws-node with AmazonEKS_CNI_Policy), the `<name>-vpc-cni` and
    `<name>-kube-proxy` managed add-ons, and `<name>-k8s` (a Kubernetes provider for the cluster).

    Outputs: `cluster_name`, `endpoint`, `certificate_authority` (CA data), `oidc_provider_arn`,
    `oidc_issuer_url` (https://...), `kubeconfig` (secret), `provider`, `cluster_security_group_id`,
    `admin_access` (what the provider needs before it can act on the cluster) and
    `node_prerequisites` (the add-ons node groups should wait for).
    """

    def __init__(self, name: str, spec: PlatformSpec, subnet_ids: pulumi.Input, region: str,
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.platform_name = spec.name
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
        self.oidc_issuer_url: pulumi.Output[str] = self.eks.identities.apply(lambda ids: ids[0].oidcs[0].issuer)
        # No thumbprint_lists: optional in pulumi-aws v7. IAM verifies the issuer's TLS certificate
        # against its library of trusted root CAs (EKS's issuer has an Amazon-issued certificate) and,
        # when none is given, records the top intermediate CA's thumbprint itself; a pinned value
        # could only go stale when the certificate chain rotates.
        self.oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=self.oidc_issuer_url, client_id_lists=[STS_AUDIENCE], opts=child
        )
        self.oidc_provider_arn = self.oidc_provider.arn
        # vpc-cni and kube-proxy are DaemonSets, healthy with zero nodes (terraform-aws-eks makes
        # vpc-cni `before_compute` the same way), so they are made with the cluster and nodes can
        # join a cluster whose networking is already managed. preserve: deleting the add-on
        # resource must not tear pod networking out of a running cluster.
        self.vpc_cni_role, self.vpc_cni = addon_with_role(
            "vpc-cni", f"{name}-vpc-cni", parent=self, cluster_name=self.eks.name,
            oidc_provider_arn=self.oidc_provider_arn, oidc_issuer_url=self.oidc_issuer_url,
            service_account=VPC_CNI_SERVICE_ACCOUNT, managed_policy_arns={"cni": VPC_CNI_POLICY},
            preserve=True,
            # EKS enforces NetworkPolicy (team isolation) only with the CNI's policy agent on.
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
        )
        self.kube_proxy = aws.eks.Addon(
            f"{name}-kube-proxy", cluster_name=self.eks.name, preserve=True, **addon_args("kube-proxy"), opts=child
        )
        # What node groups should depend on, so nodes start with the managed CNI and its IRSA role.
        self.node_prerequisites: list[pulumi.Resource] = [self.vpc_cni, self.kube_proxy]
        self.cluster_name = self.eks.name
        self.endpoint = self.eks.endpoint
        self.certificate_authority = self.eks.certificate_authority.data
        self.cluster_security_group_id = self.eks.vpc_config.cluster_security_group_id
        # The private endpoint's interfaces carry only the cluster security group, which admits the
        # cluster itself: networks that run `pulumi up` or kubectl (VPN, CI) must be let in on 443.
        self.api_access = [
            aws.vpc.SecurityGroupIngressRule(
                f"{name}-api-from-{i}",
                security_group_id=self.cluster_security_group_id,
                cidr_ipv4=str(cidr),
                ip_protocol="tcp",
                from_port=443,
                to_port=443,
                description="Kubernetes API from an allowed network (endpoint.privateAccessCidrs)",
                opts=child,
            )
            for i, cidr in enumerate(spec.endpoint.private_access_cidrs)
        ]
        self.admin_access.extend(self.api_access)
        self.kubeconfig = pulumi.Output.secret(pulumi.Output.all(
            self.eks.name, self.eks.endpoint, self.eks.certificate_authority.data
        ).apply(lambda args: kubeconfig(args[0], args[1], args[2], region, pulumi.Config("aws").get("profile"))))
        self.provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=child)
        self.register_outputs({
            "cluster_name": self.cluster_name,
            "endpoint": self.endpoint,
            "certificate_authority": self.certificate_authority,
            "oidc_provider_arn": self.oidc_provider_arn,
            "oidc_issuer_url": self.oidc_issuer_url,
            "kubeconfig": self.kubeconfig,
            "cluster_security_group_id": self.cluster_security_group_id,
        })
