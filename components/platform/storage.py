"""The platform's storage: a KMS key, the four S3 buckets teams keep their data in, the Mountpoint
for S3 CSI driver, the shared EFS file system with its `cloudml-shared` StorageClass, and the
optional FSx for Lustre file system; and what each team gets of it: its data volumes.

The S3 parts are in `storage_s3`, the file systems in `storage_fs`; this module wires them into one
component. Everything that holds data (the key, buckets, file systems) is protected per
`protectStatefulResources` and retained on delete: removing it from the stack never deletes data.

The Mountpoint driver reads nothing with its own identity: every S3 volume the platform makes is a
PersistentVolume with `authenticationSource: pod`, so S3 sees the mounting pod's own IRSA role (a
team's role reaches only `<bucket>/<team>/`). `team_volumes`, `volume_objects` and
`volume_quota_problems` are pure (Tenancy puts the objects in each team's volumes group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.errors import ConfigError, ConfigProblem, display_value
from components.fieldtypes import quantity_bytes
from components.platform.managed_addons import addon_with_role
from components.platform.storage_fs import SHARED_STORAGE_CLASS, LustreFilesystem, SharedFilesystem, private_subnet_count
from components.platform.storage_s3 import (
    BUCKET_ROLES,
    PlatformBucket,
    bucket_name_problems,
    bucket_prefix,
    storage_key_policy,
)
from components.render import RUN_AS_USER, render_template
from components.spec import PLATFORM_KEY, S3_VOLUMES, SHARED_VOLUME, PlatformSpec, team_namespace

# The Mountpoint for S3 CSI driver's node service account (EKS user guide, Mountpoint add-on page).
S3_CSI_SERVICE_ACCOUNT = ("kube-system", "s3-csi-driver-sa")
MOUNTPOINT_DRIVER = "s3.csi.aws.com"
# A PersistentVolume must state a capacity; the Mountpoint driver ignores it (S3 has no size).
S3_VOLUME_CAPACITY = "1Ti"
# What a team's storage quota charges per claim (`requests.storage` sums claim requests, never
# volume capacities): the S3 claims almost nothing, the shared EFS claim (elastic, never full) a
# nominal 100Gi, so the default 2Ti quota keeps about 1.9Ti for dev-environment homes (50Gi each).
S3_CLAIM_REQUEST = "1Gi"
SHARED_CLAIM_REQUEST = "100Gi"


def team_volumes(platform: PlatformSpec) -> dict[str, str]:
    """Data volume source -> the claim the platform makes in every team's namespace (the team's
    `volumes` in the `teams` output): `shared` with EFS, and `datasets`, `models`, `logs`."""
    sources = [SHARED_VOLUME] if platform.storage.shared_filesystem == "efs" else []
    return {source: source for source in [*sources, *S3_VOLUMES]}


def volume_objects(platform: PlatformSpec, team: str, labels: dict[str, str], *,
                   bucket_names: Mapping[str, str], region: str) -> list[dict]:
    """The team's data volumes (templates/tenancy/volumes.yaml.j2): per bucket source a read-only
    Mountpoint for S3 PersistentVolume `<team>-<source>` of the team's prefix, authenticated with
    the pod's own role, pre-bound to the claim `<source>`; with EFS, the read-write claim `shared`."""
    claims = team_volumes(platform)
    return render_template(
        "tenancy/volumes.yaml.j2",
        team=team,
        namespace=team_namespace(team),
        labels=labels,
        s3_buckets={claims[role]: bucket_names[role] for role in S3_VOLUMES},
        region=region,
        run_as_user=RUN_AS_USER,
        driver=MOUNTPOINT_DRIVER,
        pv_capacity=S3_VOLUME_CAPACITY,
        s3_claim_request=S3_CLAIM_REQUEST,
        shared_claim=claims.get(SHARED_VOLUME),
        shared_storage_class=SHARED_STORAGE_CLASS,
        shared_claim_request=SHARED_CLAIM_REQUEST,
    )


def platform_claims_bytes(platform: PlatformSpec) -> int:
    """Storage the claims the platform makes in each team namespace request (counted by its quota)."""
    return sum(quantity_bytes(SHARED_CLAIM_REQUEST if c == SHARED_VOLUME else S3_CLAIM_REQUEST) for c in team_volumes(platform))


def volume_quota_problems(platform: PlatformSpec) -> list[ConfigProblem]:
    """Teams whose storage quota cannot hold the claims the platform makes for them: the API
    server would refuse those claims halfway through `pulumi up`."""
    claims = team_volumes(platform)
    needed = platform_claims_bytes(platform)
    needed_gi = -(-needed // 2**30)
    return [
        ConfigProblem(
            f"{PLATFORM_KEY}.teams.{team}.storageQuota",
            f"is less than the {needed_gi}Gi requested by the claims the platform makes for the team ({', '.join(claims)})",
            f"raise it well above {needed_gi}Gi: dev-environment homes and other claims count against it too",
            display_value(tenant.storage_quota),
        )
        for team, tenant in sorted(platform.teams.items())
        if quantity_bytes(tenant.storage_quota) < needed
    ]


class Storage(pulumi.ComponentResource):
    """Creates `<name>-key` (KMS, rotating), for each of datasets, models, checkpoints and logs
    `<name>-<role>` (an S3 bucket) with its `-public-access-block`, `-ownership`, `-encryption`,
    `-policy`, `-lifecycle` (and `-versioning` for models), `<name>-s3-csi-irsa` (IRSA role of
    kube-system/s3-csi-driver-sa, with no permissions) and `<name>-s3-csi` (the
    aws-mountpoint-s3-csi-driver add-on). With `sharedFilesystem: efs`: the `SharedFilesystem`
    children (`<name>-efs`, `-efs-sg`, `-efs-mount-<i>`, `-efs-csi-irsa`, `-efs-csi`,
    `-efs-storage-class`). With `lustre.enabled`: the `LustreFilesystem` children (`<name>-lustre-sg`,
    `<name>-lustre`, `<name>-lustre-datasets`).

    `private_subnet_ids` is a list of subnet ids, or an Output of one whose length the network spec
    gives (one subnet per AZ of a new VPC, or the listed subnets of an existing one). `vpc_cidr` must
    be the VPC's real CIDR (look it up for an existing VPC). Add-ons and the StorageClass wait for
    `after` (the node groups and the cluster admins' access).

    Outputs: `buckets` (role -> bucket), `bucket_names`, `bucket_arns` (role -> Output),
    `kms_key_arn`, `efs_id` (or None), `storage_class` ("cloudml-shared" or None), `lustre` (the
    FSx for Lustre file system or None).
    """

    def __init__(
        self,
        name: str,
        spec: PlatformSpec,
        *,
        vpc_id: pulumi.Input[str],
        vpc_cidr: pulumi.Input[str],
        private_subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]],
        oidc_provider_arn: pulumi.Input[str],
        oidc_issuer_url: pulumi.Input[str],
        provider: k8s.Provider,
        cluster_name: pulumi.Input[str],
        after: Sequence[pulumi.Resource],
        opts: pulumi.ResourceOptions | None = None,
    ):
        problems = bucket_name_problems(spec)
        if problems:
            raise ConfigError(problems)
        super().__init__("cloudml:platform:Storage", name, None, opts)
        after = list(after)
        child = pulumi.ResourceOptions(parent=self)
        invoke = pulumi.InvokeOptions(parent=self)
        storage = spec.storage
        lustre_enabled = storage.lustre.enabled

        account_id = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke)
        region = aws.get_region_output(opts=invoke).region
        lustre_prefix = bucket_prefix(spec.name, "datasets") if lustre_enabled else None
        self.key = aws.kms.Key(
            f"{name}-key",
            description=f"Encryption at rest of the {spec.name} platform's buckets and file systems",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(account_id, partition.partition, region, partition.dns_suffix).apply(
                lambda args: storage_key_policy(*args, lustre_bucket_prefix=lustre_prefix)
            ),
            # Deleting the key would make every retained bucket and file system unreadable.
            opts=pulumi.ResourceOptions(parent=self, protect=spec.protect_stateful_resources, retain_on_delete=True),
        )
        self.kms_key_arn = self.key.arn

        self.platform_buckets = {role: PlatformBucket(f"{name}-{role}", role, spec, self.key.arn, self) for role in BUCKET_ROLES}
        self.buckets = {role: b.bucket for role, b in self.platform_buckets.items()}
        self.bucket_names = {role: b.name for role, b in self.platform_buckets.items()}
        self.bucket_arns = {role: b.arn for role, b in self.platform_buckets.items()}

        # The driver's controller is a Deployment (ACTIVE only with nodes, `after`). Its role has no
        # policy: pod-level volumes never use it, and a volume with the default driver-level
        # credentials (only cluster admins can make PersistentVolumes) gets nowhere instead of
        # falling back to whatever the node's role may reach.
        self.s3_csi_role, self.s3_csi_driver = addon_with_role(
            "aws-mountpoint-s3-csi-driver", f"{name}-s3-csi", parent=self, cluster_name=cluster_name,
            oidc_provider_arn=oidc_provider_arn, oidc_issuer_url=oidc_issuer_url,
            service_account=S3_CSI_SERVICE_ACCOUNT, after=after,
        )

        if isinstance(private_subnet_ids, (list, tuple)):
            subnet_count = len(private_subnet_ids)
            subnet_ids = pulumi.Output.all(*private_subnet_ids)
        else:
            subnet_count = private_subnet_count(spec.network)
            subnet_ids = private_subnet_ids

        self.shared: SharedFilesystem | None = None
        if storage.shared_filesystem == "efs":
            self.shared = SharedFilesystem(
                name, spec, key_arn=self.key.arn, vpc_id=vpc_id, vpc_cidr=vpc_cidr, subnet_ids=subnet_ids,
                subnet_count=subnet_count, oidc_provider_arn=oidc_provider_arn, oidc_issuer_url=oidc_issuer_url,
                cluster_name=cluster_name, provider=provider, after=after, parent=self,
            )
        self.efs_id = self.shared.file_system.id if self.shared else None
        self.storage_class = self.shared.storage_class if self.shared else None

        self.lustre_filesystem: LustreFilesystem | None = None
        if lustre_enabled:
            self.lustre_filesystem = LustreFilesystem(
                name, spec, key_arn=self.key.arn, vpc_id=vpc_id, vpc_cidr=vpc_cidr, subnet_ids=subnet_ids,
                datasets_bucket=self.bucket_names["datasets"], after_key_policy=[self.key], parent=self,
            )
        self.lustre = self.lustre_filesystem.file_system if self.lustre_filesystem else None

        self.register_outputs({
            "bucket_names": self.bucket_names,
            "bucket_arns": self.bucket_arns,
            "kms_key_arn": self.kms_key_arn,
            "efs_id": self.efs_id,
            "storage_class": self.storage_class,
            "lustre_id": self.lustre.id if self.lustre else None,
        })
