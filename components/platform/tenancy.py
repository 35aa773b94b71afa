"""Team tenancy: what makes each team in `teams:` a tenant of the cluster, and what keeps it in its lane.

For every team: its namespace (Pod Security `restricted`), ResourceQuota (GPUs via
`requests.nvidia.com/gpu`), LimitRange and NetworkPolicies, rendered from `templates/tenancy/`; an
IRSA role whose S3 access stops at the team's own prefixes; the workload service account bound to
that role; its data volumes (see `storage.volume_objects`: read-only S3 claims of the team's own
prefixes, mounted with the pod's own role, and with EFS a read-write `shared` claim); and EKS access
entries giving the team's admins `AmazonEKSEditPolicy` in their namespace only. Edit may read but
not change ResourceQuota, LimitRange or the Namespace (EKS user guide, "Review access policy
permissions"), so a team cannot raise its own quota or relax Pod Security. It may change
NetworkPolicies in its own namespace: that weakens only that team's own isolation, never
another team's (each namespace denies ingress by default).

The policy builders (`team_s3_policy`, `team_admin_namespaces`, `tenancy_objects`) are pure and tested
on their own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.errors import ConfigError
from components.labels import MANAGED_BY, PART_OF, TEAM_LABEL
from components.platform.cluster import principal_key
from components.platform.irsa import ServiceAccountRole
from components.fieldtypes import quantity_bytes
from components.platform.storage import platform_claims_bytes, team_volumes, volume_objects, volume_quota_problems
from components.render import render_template
from components.spec import S3_VOLUMES, PlatformSpec, TenantSpec, team_namespace

EDIT_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy"
IRSA_ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
# The platform's bucket roles (storage); every team works under `<team>/` in each of them.
BUCKET_ROLES = ("datasets", "models", "checkpoints", "logs")
# Workloads may delete only what they regenerate; datasets are written by data-prep jobs but not deleted.
READ_WRITE_DELETE_ROLES = ("checkpoints", "logs", "models")
# Prometheus (kube-prometheus-stack) runs here; its scrapes must reach team pods.
MONITORING_NAMESPACE = "monitoring"
# TF Serving's gRPC and REST ports: what a model service exposes through its load balancer.
SERVING_PORTS = (8500, 8501)
# CoreDNS of EKS: Deployment `coredns` in kube-system, pods labelled k8s-app=kube-dns.
DNS_NAMESPACE = "kube-system"
DNS_POD_LABELS = {"k8s-app": "kube-dns"}
# Pods that sit behind an NLB: model services (the renderer sets this label from the workload kind,
# after the workload's own labels, so no other workload can claim it).
LOAD_BALANCER_POD_LABELS = {"app.kubernetes.io/component": "modelService"}
# Interactive tools a team may put behind an internal NLB (`expose: internal`): JupyterLab and
# TensorBoard, on their own ports only. The renderer sets `cloudml.io/expose: internal` only on
# workloads that asked for it (teams cannot set cloudml.io/ labels), so tools left on port-forward
# stay closed to the VPC — TensorBoard has no authentication.
TOOL_POD_LABELS = {"cloudml.io/expose": "internal"}
TOOL_COMPONENTS = ("devEnvironment", "tensorboard")
TOOL_PORTS = (8888, 6006)
INSTANCE_METADATA_CIDR = "169.254.169.254/32"
# PVCs per team (see the quota comment in templates/tenancy/team.yaml.j2).
PVC_QUOTA = 100


def team_service_account(team: str) -> str:
    return f"{team}-workloads"


def team_labels(platform: str, team: str) -> dict[str, str]:
    """The labels every tenancy object of `team` carries."""
    return {
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/component": "tenancy",
        "app.kubernetes.io/name": team,
        "app.kubernetes.io/instance": f"{platform}-{team}",
        TEAM_LABEL: team,
    }


def load_balancer_cidrs(platform: PlatformSpec, vpc_cidr: str) -> list[str]:
    """Sources an NLB's traffic can carry to a model service pod: the VPC (the NLB's own addresses)
    and, when internet-facing NLBs are allowed, the client CIDRs they accept (in case a service
    turns client IP preservation on)."""
    cidrs = [vpc_cidr]
    if platform.load_balancing.allow_internet_facing:
        cidrs += [str(c) for c in platform.load_balancing.internet_facing_cidrs if str(c) != vpc_cidr]
    return cidrs


def guard_objects(platform: PlatformSpec) -> list[dict]:
    """The cluster-wide admission guard on team namespaces' load balancers (see the template)."""
    labels = {"app.kubernetes.io/part-of": "cloudml", "app.kubernetes.io/managed-by": "cloudml",
              "app.kubernetes.io/component": "tenancy", "app.kubernetes.io/name": "load-balancer-guard",
              "app.kubernetes.io/instance": f"{platform.name}-load-balancer-guard"}
    return render_template(
        "tenancy/load-balancer-guard.yaml.j2",
        labels=labels,
        allow_internet_facing=platform.load_balancing.allow_internet_facing,
        allowed_cidrs=[str(c) for c in platform.load_balancing.internet_facing_cidrs],
    )


def tenancy_objects(platform: PlatformSpec, team: str, tenant: TenantSpec, *, vpc_cidr: str) -> list[dict]:
    """The Kubernetes objects that make `team` a tenant: namespace, quota, limit range, network policies."""
    values = {
        "team": team,
        "namespace": team_namespace(team),
        "labels": team_labels(platform.name, team),
        "tenant": tenant,
    }
    return [
        *render_template("tenancy/team.yaml.j2", **values, pvc_quota=PVC_QUOTA),
        *render_template(
            "tenancy/network-policies.yaml.j2",
            **values,
            dns_namespace=DNS_NAMESPACE,
            dns_pod_labels=DNS_POD_LABELS,
            monitoring_namespace=MONITORING_NAMESPACE,
            load_balancer_pod_labels=LOAD_BALANCER_POD_LABELS,
            load_balancer_cidrs=load_balancer_cidrs(platform, vpc_cidr),
            load_balancer_ports=SERVING_PORTS,
            tool_pod_labels=TOOL_POD_LABELS,
            tool_components=list(TOOL_COMPONENTS),
            tool_ports=TOOL_PORTS,
            metadata_cidr=INSTANCE_METADATA_CIDR,
        ),
    ]


def service_account_metadata(platform: str, team: str, role_arn: pulumi.Input[str]) -> dict:
    """Metadata of the team's workload service account, annotated with its IRSA role."""
    return {
        "name": team_service_account(team),
        "namespace": team_namespace(team),
        "labels": team_labels(platform, team),
        "annotations": {IRSA_ROLE_ANNOTATION: role_arn},
    }


def team_s3_policy(team: str, bucket_arns: Mapping[str, str], kms_key_arn: str | None = None) -> str:
    """The IRSA role's inline policy: S3 access to `<bucket>/<team>/` in each platform bucket, nothing else.

    checkpoints, logs, models: read, write, delete. datasets: read and write (data-prep jobs write
    the team's datasets), no delete. Listing only under the team's prefix. With a KMS key, only
    Decrypt/GenerateDataKey and only through S3 in the key's region.
    """
    _check_bucket_roles(bucket_arns)
    for role, arn in bucket_arns.items():
        if not arn.startswith("arn:") or ":s3:::" not in arn or "/" in arn or "*" in arn or "?" in arn:
            raise ValueError(f"bucket_arns[{role!r}] is not the ARN of one S3 bucket: {arn!r}")
    buckets = [bucket_arns[role] for role in BUCKET_ROLES]
    statements = [
        {
            "Sid": "ListTeamPrefix",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": buckets,
            "Condition": {"StringLike": {"s3:prefix": [f"{team}/", f"{team}/*"]}},
        },
        {
            "Sid": "ReadWriteDeleteTeamObjects",
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": [f"{bucket_arns[role]}/{team}/*" for role in READ_WRITE_DELETE_ROLES],
        },
        {
            "Sid": "ReadWriteTeamDatasets",
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
            "Resource": [f"{bucket_arns['datasets']}/{team}/*"],
        },
    ]
    if kms_key_arn is not None:
        statements.append({
            "Sid": "UseStorageKeyThroughS3",
            "Effect": "Allow",
            # SSE-KMS: GenerateDataKey to write (and for multipart uploads), Decrypt to read.
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": kms_key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": _s3_service_name(kms_key_arn)}},
        })
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def _check_bucket_roles(bucket_arns: Mapping[str, object]) -> None:
    if set(bucket_arns) != set(BUCKET_ROLES):
        raise ValueError(
            f"bucket_arns must name exactly the buckets {', '.join(BUCKET_ROLES)}; got {', '.join(sorted(bucket_arns)) or 'none'}"
        )


def _s3_service_name(kms_key_arn: str) -> str:
    """`s3.<region>.amazonaws.com` for the key's region: an SSE-KMS key lives in its bucket's region.
    Only the `aws` partition (like EDIT_POLICY's ARN)."""
    parts = kms_key_arn.split(":")
    if len(parts) < 6 or parts[:3] != ["arn", "aws", "kms"] or not parts[3] or not parts[5].startswith("key/"):
        raise ValueError(f"kms_key_arn is not the ARN of a KMS key in the aws partition: {kms_key_arn!r}")
    return f"s3.{parts[3]}.amazonaws.com"


def team_admin_namespaces(spec: PlatformSpec) -> dict[str, list[str]]:
    """Team admin principal -> the namespaces it administers (sorted), for principals that are not
    already platform admins. An IAM principal can have only one access entry per cluster and one
    association per access policy, so a principal administering several teams gets one entry whose
    Edit association lists all their namespaces."""
    namespaces: dict[str, list[str]] = {}
    for team, tenant in sorted(spec.teams.items()):
        for principal in tenant.admins:
            if principal in spec.admins:
                continue  # already cluster-admin through the Cluster's access entry
            namespaces.setdefault(principal, [])
            if team_namespace(team) not in namespaces[principal]:
                namespaces[principal].append(team_namespace(team))
    return namespaces


class Tenancy(pulumi.ComponentResource):
    """Creates, for every team:
    `<name>-<team>` (ConfigGroup: namespace, ResourceQuota, LimitRange, NetworkPolicies),
    `<name>-<team>-irsa` (ServiceAccountRole for `team-<team>/<team>-workloads`, S3 limited to the team's prefixes),
    `<name>-<team>-sa` (the workload ServiceAccount, annotated with that role),
    `<name>-<team>-volumes` (ConfigGroup: the team's S3 PersistentVolumes and its claims);
    and for every team admin principal that is not a platform admin:
    `<name>-admin-<principal>` (EKS access entry) and `<name>-admin-<principal>-edit` (AmazonEKSEditPolicy
    scoped to the namespaces it administers).

    `bucket_names` (role -> bucket name) and `region` go into the S3 volumes.

    Outputs: `teams` (team -> namespace, serviceAccount, gpuQuota, roleArn, volumes, quotas), the platform's
    `teams` output.
    """

    def __init__(
        self,
        name: str,
        spec: PlatformSpec,
        provider: k8s.Provider,
        cluster_access: Sequence[pulumi.Resource],
        *,
        cluster_name: pulumi.Input[str],
        oidc_provider_arn: pulumi.Input[str],
        oidc_issuer_url: pulumi.Input[str],
        bucket_arns: Mapping[str, pulumi.Input[str]],
        bucket_names: Mapping[str, pulumi.Input[str]],
        region: str,
        vpc_cidr: pulumi.Input[str],
        kms_key_arn: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        _check_bucket_roles(bucket_arns)  # before anything exists
        problems = volume_quota_problems(spec)
        if problems:
            raise ConfigError(problems)
        super().__init__("cloudml:platform:Tenancy", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.guards = k8s.yaml.v2.ConfigGroup(
            f"{name}-guards", objs=guard_objects(spec),
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(cluster_access)),
        )
        self.groups: dict[str, k8s.yaml.v2.ConfigGroup] = {}
        self.roles: dict[str, ServiceAccountRole] = {}
        self.service_accounts: dict[str, k8s.core.v1.ServiceAccount] = {}
        self.volumes: dict[str, k8s.yaml.v2.ConfigGroup] = {}
        s3_buckets = pulumi.Output.all(**{role: bucket_names[role] for role in S3_VOLUMES})
        for team, tenant in spec.teams.items():
            namespace, account = team_namespace(team), team_service_account(team)
            self.groups[team] = group = k8s.yaml.v2.ConfigGroup(
                f"{name}-{team}",
                # A plain string CIDR (a new VPC's) keeps `pulumi preview` complete; an unknown one
                # defers the whole group to `pulumi up`.
                objs=pulumi.Output.from_input(vpc_cidr).apply(
                    lambda cidr, team=team, tenant=tenant: tenancy_objects(spec, team, tenant, vpc_cidr=cidr)
                ),
                # The provider can only act once the admins' access to the cluster exists.
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=list(cluster_access)),
            )
            policy = pulumi.Output.all(*[bucket_arns[r] for r in BUCKET_ROLES], kms_key_arn).apply(
                lambda args, team=team: team_s3_policy(team, dict(zip(BUCKET_ROLES, args[:-1])), args[-1])
            )
            self.roles[team] = role = ServiceAccountRole(
                f"{name}-{team}-irsa",
                oidc_provider_arn=oidc_provider_arn,
                oidc_issuer_url=oidc_issuer_url,
                namespace=namespace,
                service_account=account,
                policy=policy,
                opts=child,
            )
            # Its own resource, not part of the group: the role ARN is unknown until the role
            # exists, and an unknown value anywhere in a ConfigGroup's objs hides the whole group
            # from `pulumi preview`.
            self.service_accounts[team] = k8s.core.v1.ServiceAccount(
                f"{name}-{team}-sa",
                metadata=service_account_metadata(spec.name, team, role.arn),
                opts=pulumi.ResourceOptions(
                    parent=self,
                    provider=provider,
                    depends_on=[group],  # its namespace
                    # Earlier versions made it inside the group (ConfigGroup children are named
                    # `<group>:<namespace>/<name>`): adopt that object instead of replacing it.
                    aliases=[pulumi.Alias(name=f"{name}-{team}:{namespace}/{account}", parent=group)],
                ),
            )
            # Its own group: bucket names are unknown until the buckets exist, and would otherwise
            # hide the namespace, quota and policies from `pulumi preview`.
            self.volumes[team] = k8s.yaml.v2.ConfigGroup(
                f"{name}-{team}-volumes",
                objs=s3_buckets.apply(lambda buckets, team=team: volume_objects(
                    spec, team, team_labels(spec.name, team), bucket_names=buckets, region=region)),
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=[*cluster_access, group]),
            )
        self.admin_entries: dict[str, aws.eks.AccessEntry] = {}
        self.admin_policies: dict[str, aws.eks.AccessPolicyAssociation] = {}
        for principal, namespaces in team_admin_namespaces(spec).items():
            # Named by the principal, not its list position: removing one admin must not replace the others.
            key = principal_key(principal)
            self.admin_entries[principal] = entry = aws.eks.AccessEntry(
                f"{name}-admin-{key}", cluster_name=cluster_name, principal_arn=principal, type="STANDARD", opts=child
            )
            self.admin_policies[principal] = aws.eks.AccessPolicyAssociation(
                f"{name}-admin-{key}-edit",
                cluster_name=cluster_name,
                principal_arn=principal,
                policy_arn=EDIT_POLICY,
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="namespace", namespaces=namespaces),
                # A changed scope replaces the association, and the association's identity is
                # (cluster, principal, policy): created before the old one is deleted, the delete
                # would disassociate the new one. Delete first.
                opts=pulumi.ResourceOptions(parent=self, depends_on=[entry], delete_before_replace=True),
            )
        self.teams = {
            team: {
                "namespace": team_namespace(team),
                "serviceAccount": team_service_account(team),
                "gpuQuota": tenant.gpu_quota,
                "roleArn": self.roles[team].arn,
                "volumes": team_volumes(spec),
                # What the team stack may ask for at once, checked before its `pulumi up`; storage is
                # what the quota leaves after the claims the platform makes in the namespace.
                "quotas": {
                    "cpu": tenant.cpu_quota,
                    "memory": tenant.memory_quota,
                    "storageBytes": quantity_bytes(tenant.storage_quota) - platform_claims_bytes(spec),
                    "loadBalancers": tenant.load_balancers,
                },
            }
            for team, tenant in spec.teams.items()
        }
        self.register_outputs({"teams": self.teams})
