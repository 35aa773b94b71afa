"""The stack contract: pydantic models of `cloudml:platform` and `cloudml:team`, and their loading.

This module is the source of truth for what a stack may say. Every field is typed, described and
defaulted (or required); unknown keys are errors; names that become Kubernetes names are DNS-1123
labels. `load_platform` / `load_team` validate raw config and raise one `ConfigError` listing every
problem with its config path, the bad value and the fix. Rules that span several fields of the
stack (unique names, references, quota against capacity) run after the field checks pass.
"""

from __future__ import annotations

import math
import re
from ipaddress import IPv4Network
from typing import Annotated, Any, Literal, Union

import pydantic
from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, StrictInt, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from components import gpu_catalog
from components.errors import ConfigError, ConfigProblem, display_value, format_path, from_pydantic
from components.fieldtypes import (
    Cidr,
    Count,
    CpuQuantity,
    CronSchedule,
    Duration,
    Email,
    EnvName,
    IamPrincipalArn,
    Image,
    LabelKey,
    LabelValue,
    MemoryQuantity,
    MountPath,
    PositiveCount,
    SecretKey,
    StorageQuantity,
    SubPath,
    VersionLabel,
    VpcCidr,
    cpu_millis,
    quantity_bytes,
    dns_label,
    problem,
)

PLATFORM_KEY = "cloudml:platform"
TEAM_KEY = "cloudml:team"
# 1.30+: the admission guard on team load balancers is a ValidatingAdmissionPolicy (v1 since 1.30).
SUPPORTED_KUBERNETES_VERSIONS = ("1.30", "1.31", "1.32", "1.33")
MAX_NODES_PER_GROUP = 450  # EKS managed node group quota (nodes per group)

ClusterName = Annotated[str, dns_label(32, "platform name")]
PoolName = Annotated[str, dns_label(20, "pool name")]
TeamName = Annotated[str, dns_label(24, "team name")]
# Workload names get suffixes (JobSet pods: <name>-worker-0-12), so they stay well under 63.
WorkloadName = Annotated[str, dns_label(40, "workload name", start_with_letter=True)]
ModelName = Annotated[str, dns_label(40, "model name")]
# Secret names get a `-` suffix nowhere; 63 is the DNS-1123 label limit.
SecretName = Annotated[str, dns_label(63, "secret name")]


class Model(BaseModel):
    """Base of every contract model: camelCase keys, unknown keys rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=False,
        validate_by_alias=True,
        frozen=True,
        hide_input_in_errors=False,
    )


# --- platform ---------------------------------------------------------------------------------


class NetworkSpec(Model):
    """Where the cluster lives: a new VPC, or an existing one."""

    vpc_cidr: VpcCidr = Field(IPv4Network("10.40.0.0/16"), description="CIDR of a new VPC (not with vpcId).")
    availability_zones: StrictInt = Field(3, ge=2, le=6, description="How many AZs a new VPC spans (2-6; not with vpcId).")
    nat_gateways: Literal["perAz", "single"] = Field(
        "perAz", description="A new VPC's NAT gateways: one per AZ (an AZ outage keeps the others online) or a single cheaper one."
    )
    vpc_id: str | None = Field(None, pattern=r"^vpc-[0-9a-f]{8,17}$", description="Use this existing VPC instead of creating one.")
    private_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        default_factory=list,
        validate_default=True,  # the rule must run when the key is left out, too
        description="Private subnets of the existing VPC (at least 2, in different AZs), with a route to the internet (NAT).",
    )
    public_subnet_ids: list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]{8,17}$")]] = Field(
        default_factory=list, description="Public subnets of the existing VPC, for internet-facing load balancers (optional)."
    )

    @field_validator("private_subnet_ids")
    @classmethod
    def _subnets_need_vpc(cls, value: list[str], info: ValidationInfo) -> list[str]:
        has_vpc = info.data.get("vpc_id") is not None
        if has_vpc and len(value) < 2:
            raise problem("an existing VPC needs at least 2 private subnets", "list the private subnet ids of 2 or more AZs")
        if value and not has_vpc:
            raise problem("subnets were given without vpcId", "set network.vpcId to the VPC that holds these subnets")
        return value

    @model_validator(mode="after")
    def _new_or_existing(self) -> "NetworkSpec":
        new_vpc_keys = {"vpc_cidr": "vpcCidr", "availability_zones": "availabilityZones", "nat_gateways": "natGateways"}
        given = set(new_vpc_keys) & self.model_fields_set
        if self.vpc_id is None and self.public_subnet_ids:
            raise problem("publicSubnetIds were given without vpcId", "set network.vpcId to the VPC that holds these subnets")
        if self.vpc_id is not None and given:
            keys = " and ".join(sorted(new_vpc_keys[k] for k in given))
            raise problem(f"{keys} describe a new VPC, but vpcId uses an existing one", f"remove {keys}, or remove vpcId")
        return self


class EndpointSpec(Model):
    """Who can reach the Kubernetes API endpoint."""

    allow_public_internet: StrictBool = Field(
        False, description="Explicit opt-in to list 0.0.0.0/0 in publicAccessCidrs. Off: the endpoint is never world-open."
    )
    public_access_cidrs: list[Cidr] = Field(
        default_factory=list, description="CIDRs allowed to reach a public endpoint. Empty (default): private endpoint only."
    )
    private_access_cidrs: list[Cidr] = Field(
        default_factory=list,
        description="Networks outside the cluster (VPN, peered VPCs, CI runners) allowed to reach the private endpoint on 443.",
    )

    @field_validator("public_access_cidrs")
    @classmethod
    def _no_open_world(cls, value: list[IPv4Network], info: ValidationInfo) -> list[IPv4Network]:
        if any(c.prefixlen == 0 for c in value) and not info.data.get("allow_public_internet"):
            raise problem(
                "0.0.0.0/0 opens the Kubernetes API to the whole internet",
                "list your office/VPN CIDRs instead, or set endpoint.allowPublicInternet: true to accept the risk",
            )
        return value


class SystemPoolSpec(Model):
    """On-demand CPU nodes for cluster add-ons (autoscaler, monitoring, controllers)."""

    instance_type: str = Field("m6i.xlarge", pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$", description="EC2 instance type of the system nodes.")
    min: PositiveCount = Field(2, le=MAX_NODES_PER_GROUP, description="Minimum nodes (at least 1; 2 for availability).")
    max: PositiveCount = Field(4, le=MAX_NODES_PER_GROUP, description="Maximum nodes.")
    disk_size_gib: StrictInt = Field(50, ge=20, le=1000, description="Root volume size in GiB.")

    @field_validator("max")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        return _check_max(value, info)


class GpuPoolSpec(Model):
    """One GPU node pool: an EKS managed node group of one GPU model."""

    name: PoolName = Field(description="Pool name; becomes the `cloudml.io/pool` node label.")
    instance_types: list[str] = Field(
        min_length=1,
        description="GPU instance types (several for spot diversity); all must have the same GPU model and count.",
    )
    capacity: Literal["on-demand", "spot"] = Field("on-demand", description="EC2 capacity type.")
    min: Count = Field(0, le=MAX_NODES_PER_GROUP, description="Minimum nodes; 0 (default) lets the pool scale to zero.")
    max: PositiveCount = Field(le=MAX_NODES_PER_GROUP, description="Maximum nodes; caps the pool's cost.")
    disk_size_gib: StrictInt = Field(200, ge=50, le=4000, description="Root volume size in GiB (ML images are large).")
    time_slicing_replicas: StrictInt = Field(
        1, ge=1, le=16, description="Share each GPU between this many pods via device-plugin time-slicing (1: off)."
    )

    @field_validator("instance_types")
    @classmethod
    def _known_same_gpus(cls, value: list[str]) -> list[str]:
        unknown = [t for t in value if gpu_catalog.lookup(t) is None]
        if unknown:
            raise problem(
                f"{', '.join(unknown)} {'is not a' if len(unknown) == 1 else 'are not'} GPU instance type"
                f"{'' if len(unknown) == 1 else 's'} cloudml knows",
                f"use types from the GPU catalog: {', '.join(sorted(gpu_catalog.GPU_INSTANCE_TYPES))}",
            )
        rows = [gpu_catalog.lookup(t) for t in value]
        shapes = {(r.gpu_type, r.gpus) for r in rows}
        if len(shapes) > 1:
            described = ", ".join(f"{r.name}={r.gpus}x{r.gpu_type}" for r in rows)
            raise problem(
                f"mixes GPU models or counts ({described})",
                "put only instance types with the same GPU model and GPU count in one pool; make another pool for the rest",
            )
        if len(set(value)) != len(value):
            raise problem("lists an instance type twice", "list each instance type once")
        return value

    @field_validator("max")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        return _check_max(value, info)

    @property
    def gpu_type(self) -> str:
        return gpu_catalog.lookup(self.instance_types[0]).gpu_type

    @property
    def gpus_per_node(self) -> int:
        return gpu_catalog.lookup(self.instance_types[0]).gpus

    @property
    def schedulable_gpus_per_node(self) -> int:
        return self.gpus_per_node * self.time_slicing_replicas


class LustreSpec(Model):
    """Optional FSx for Lustre file system linked to the datasets bucket."""

    enabled: StrictBool = Field(False, description="Create an FSx for Lustre file system.")
    storage_capacity_gib: StrictInt = Field(1200, ge=1200, description="Capacity in GiB (1200 or a multiple of 2400).")

    @field_validator("storage_capacity_gib")
    @classmethod
    def _lustre_steps(cls, value: int) -> int:
        if value != 1200 and value % 2400 != 0:
            lower, upper = max(2400, value // 2400 * 2400), (value // 2400 + 1) * 2400
            raise problem("is not a size FSx for Lustre offers", f"use 1200 or a multiple of 2400 (e.g. {lower} or {upper})")
        return value


class StorageSpec(Model):
    """Shared storage for datasets, checkpoints and home directories."""

    shared_filesystem: Literal["efs", "none"] = Field("efs", description="Shared POSIX file system for PVCs.")
    lustre: LustreSpec = Field(default_factory=LustreSpec, description="FSx for Lustre.")
    checkpoint_expiry_days: StrictInt = Field(30, ge=1, le=3650, description="Days before checkpoints expire from S3.")
    log_expiry_days: StrictInt = Field(90, ge=1, le=3650, description="Days before training logs expire from S3.")


class LoadBalancingSpec(Model):
    """How model services may be exposed."""

    allow_internet_facing: StrictBool = Field(
        False, description="Allow team services to ask for internet-facing NLBs. Off: every NLB is internal."
    )
    internet_facing_cidrs: list[Cidr] = Field(
        default_factory=list,
        validate_default=True,
        description="Source CIDRs an internet-facing NLB accepts (required with allowInternetFacing).",
    )
    certificate_arn: str | None = Field(
        None, pattern=r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]+$", description="ACM certificate for TLS."
    )


    @field_validator("internet_facing_cidrs")
    @classmethod
    def _cidrs_with_opt_in(cls, value: list, info: ValidationInfo) -> list:
        allowed = info.data.get("allow_internet_facing")
        if allowed and not value:
            raise problem("internet-facing load balancers need the source CIDRs they accept",
                          "list your clients' CIDRs in loadBalancing.internetFacingCidrs")
        if value and not allowed:
            raise problem("is set, but internet-facing load balancers are not allowed",
                          "set loadBalancing.allowInternetFacing: true, or remove internetFacingCidrs")
        return value


class AutoscalingSpec(Model):
    """The Cluster Autoscaler."""

    prefer_spot: StrictBool = Field(True, description="When several pools fit a pending pod, grow spot pools first (priority expander).")
    scale_down_unneeded: Duration = Field(600, description="Remove a node after it has been unneeded this long (default 10m).")


class MonitoringSpec(Model):
    """Prometheus, Grafana and alert routing."""

    alert_emails: list[Email] = Field(default_factory=list, description="Emails subscribed to the alert SNS topic.")
    retention_days: StrictInt = Field(15, ge=1, le=365, description="Prometheus retention in days.")
    volume_size_gib: StrictInt = Field(100, ge=10, le=16000, description="Prometheus gp3 volume in GiB.")
    slack_webhook_url: SecretStr | None = Field(None, description="Slack incoming webhook (store with `pulumi config set --secret`).")
    gpu_temperature_celsius: StrictInt = Field(
        85, ge=60, le=110, description="Alert when a GPU stays at or above this temperature (C).")
    gpu_idle_utilization_percent: StrictInt = Field(
        5, ge=1, le=50, description="A GPU allocated to a pod counts as idle below this utilization (%).")
    gpu_idle_window: Duration = Field(
        7200, ge=900, le=7 * 86400, description="Alert when an allocated GPU has been idle this long (default 2h, at least 15m).")


class TenantSpec(Model):
    """A team's tenancy: its namespace's quotas and who administers it."""

    gpu_quota: Count = Field(description="GPUs the team may request at once (ResourceQuota requests.nvidia.com/gpu).")
    admins: list[IamPrincipalArn] = Field(default_factory=list, description="IAM roles/users with edit rights in the namespace.")
    cpu_quota: CpuQuantity = Field("64", description="CPU the team may request at once.")
    memory_quota: MemoryQuantity = Field("512Gi", description="Memory the team may request at once.")
    storage_quota: StorageQuantity = Field("2Ti", description="PVC storage the team may request.")
    load_balancers: Count = Field(2, description="LoadBalancer Services the team may create.")
    default_container_cpu: CpuQuantity = Field("1", description="CPU request and limit of a container that sets none (LimitRange).")
    default_container_memory: MemoryQuantity = Field("2Gi", description="Memory request and limit of a container that sets none (LimitRange).")
    alert_emails: list[Email] = Field(
        default_factory=list,
        description="Emails that receive this team's alerts (its own SNS topic); the platform's alertEmails get every alert.",
    )


class PlatformSpec(Model):
    """`cloudml:platform`: one EKS cluster with its pools, storage, monitoring and tenants."""

    name: ClusterName = Field(description="Platform name; the EKS cluster name and the prefix of every resource.")
    kubernetes_version: Literal[SUPPORTED_KUBERNETES_VERSIONS] = Field("1.31", description="EKS Kubernetes version.")
    network: NetworkSpec = Field(default_factory=NetworkSpec, description="VPC.")
    endpoint: EndpointSpec = Field(default_factory=EndpointSpec, description="API endpoint access.")
    admins: list[IamPrincipalArn] = Field(
        default_factory=list, description="IAM principals given cluster-admin through EKS access entries (no implicit creator admin)."
    )
    system_pool: SystemPoolSpec = Field(default_factory=SystemPoolSpec, description="System node pool.")
    gpu_pools: list[GpuPoolSpec] = Field(default_factory=list, description="GPU node pools.")
    storage: StorageSpec = Field(default_factory=StorageSpec, description="Storage.")
    load_balancing: LoadBalancingSpec = Field(default_factory=LoadBalancingSpec, description="Load balancers.")
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec, description="Cluster Autoscaler.")
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec, description="Monitoring and alerting.")
    teams: dict[TeamName, TenantSpec] = Field(default_factory=dict, description="Tenants: team name -> quotas and admins.")
    protect_stateful_resources: StrictBool = Field(
        True, description="Protect buckets and file systems from `pulumi destroy`. Turn off only for throwaway stacks."
    )

    def pool_capacity_gpus(self) -> int:
        return sum(p.max * p.schedulable_gpus_per_node for p in self.gpu_pools)


def team_namespace(team: str) -> str:
    """The namespace the platform makes for a team."""
    return f"team-{team}"


# --- team workloads ---------------------------------------------------------------------------


# Stock images a workload uses when neither it nor the team's defaults name one (pinned, GPU builds).
DEFAULT_SERVING_IMAGE = "tensorflow/serving:2.18.0-gpu"
DEFAULT_DEV_IMAGE = "tensorflow/tensorflow:2.20.0-gpu-jupyter"
# Indexed Job completions above this make the trials ConfigMap and the Job unwieldy (and costly).
MAX_SWEEP_TRIALS = 500
# Kubernetes keeps at most 1 MiB (1,048,576 bytes) of data in a ConfigMap; the rest of the object
# (metadata, labels) needs room too.
MAX_SWEEP_CONFIG_BYTES = 1_000_000
# A dev environment stops after this long even if it never goes idle (its Job's activeDeadlineSeconds).
DEFAULT_MAX_SESSION_SECONDS = 24 * 3600
# Data a pod may mount: the team's shared EFS volume (read-write), or its own prefix of a platform
# bucket, read-only through Mountpoint for S3 with the team's own IAM role.
SHARED_VOLUME = "shared"
S3_VOLUMES = ("datasets", "models", "logs")
VOLUME_SOURCES = (SHARED_VOLUME, *S3_VOLUMES)


class SecretEnvRef(Model):
    """An environment variable read from a key of one of the stack's `secrets`."""

    secret: SecretName = Field(description="Name of a secret in this stack's `secrets`.")
    key: SecretKey = Field(description="Key inside that secret.")


class VolumeMount(Model):
    """A data mount: the team's shared file system, or the team's prefix of a platform bucket."""

    source: Literal["shared", "datasets", "models", "logs"] = Field(
        description="shared: the team's EFS volume (read-write). datasets, models, logs: the team's prefix "
        "(`<bucket>/<team>/`) of that platform bucket, read-only through Mountpoint for S3 with the team's IAM role."
    )
    mount_path: MountPath = Field(description="Where the volume appears in the container (absolute path).")
    sub_path: SubPath | None = Field(None, description="Mount only this directory of the volume.")
    read_only: StrictBool | None = Field(
        None, validate_default=True, description="Mount read-only. Default: true for bucket sources (always), false for shared."
    )

    @field_validator("read_only")
    @classmethod
    def _buckets_read_only(cls, value: bool | None, info: ValidationInfo) -> bool:
        source = info.data.get("source")
        if source in S3_VOLUMES and value is False:
            raise problem(
                f"bucket mounts are read-only (Mountpoint for S3 cannot modify files)",
                "remove readOnly; write outputs to S3 with the SDK (CLOUDML_MODEL_DIR etc.) or to the shared volume",
            )
        return value if value is not None else source in S3_VOLUMES


class WorkloadBase(Model):
    """Fields every workload kind has."""

    name: WorkloadName = Field(description="Workload name, unique in the stack; prefix of its Kubernetes objects.")
    image: Image | None = Field(
        None, description="Container image (pinned tag or digest). Default: the team's default image for this kind."
    )
    command: list[str] = Field(default_factory=list, description="Container command (entrypoint override).")
    args: list[str] = Field(default_factory=list, description="Container arguments.")
    env: dict[EnvName, str] = Field(default_factory=dict, description="Environment variables (plain values, not secrets).")
    secret_env: dict[EnvName, SecretEnvRef] = Field(
        default_factory=dict, description="Environment variables read from the stack's `secrets` (never written in plain config)."
    )
    cpu: CpuQuantity | None = Field(None, description="CPU request and limit. Default: defaults.cpu.")
    memory: MemoryQuantity | None = Field(None, description="Memory request and limit. Default: defaults.memory.")
    gpus: Count = Field(0, description="GPUs per pod (nvidia.com/gpu limit = request).")
    gpu_type: str | None = Field(None, description="GPU model (a pool's gpu type, e.g. a10g). Default: defaults.gpuType.")
    volumes: list[VolumeMount] = Field(default_factory=list, description="Data mounts (shared EFS volume, read-only bucket prefixes).")
    pre_commands: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Shell commands run (by /bin/sh in the container) before the main command; the first failure stops the pod.",
    )
    post_commands: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list,
        description="Shell commands run after the main command, whether it succeeded or not (its exit code is in "
        "CLOUDML_EXIT_CODE and stays the container's exit code).",
    )
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, description="Extra labels on every object.")
    annotations: dict[LabelKey, str] = Field(default_factory=dict, description="Extra annotations on every object.")

    @field_validator("secret_env")
    @classmethod
    def _secret_env_not_plain(cls, value: dict, info: ValidationInfo) -> dict:
        both = sorted(set(value) & set(info.data.get("env") or {}))
        if both:
            raise problem(f"sets {', '.join(both)}, which env sets too", "set each variable in env or in secretEnv, not both")
        return value

    @field_validator("volumes")
    @classmethod
    def _distinct_mount_paths(cls, value: list[VolumeMount]) -> list[VolumeMount]:
        paths = [v.mount_path.rstrip("/") for v in value]
        nested = sorted({a for a in paths for b in paths if a != b and b.startswith(a + "/")} | {p for p in paths if paths.count(p) > 1})
        if nested:
            raise problem(f"mounts more than one volume at or under {', '.join(nested)}", "give every volume its own mountPath")
        return value


class ModelOutput(Model):
    """Mixin: training kinds export a model."""

    model: ModelName | None = Field(
        None, description="Model the run exports (models bucket: `<team>/<model>/<version>/`). Default: the workload name."
    )

    @property
    def model_name(self) -> str:
        return self.model or self.name


class TrainingWorkload(ModelOutput, WorkloadBase):
    """A single-pod training run: a Job, or a CronJob with `schedule`."""

    kind: Literal["training"]
    schedule: CronSchedule | None = Field(None, description="Cron schedule; makes the Job a CronJob (concurrencyPolicy Forbid).")
    backoff_limit: StrictInt = Field(3, ge=0, le=100, description="Pod retries before the Job fails.")
    active_deadline: Duration | None = Field(None, description="Give up after this long (e.g. 12h). Default: no deadline.")
    ttl_after_finished: Duration | None = Field(
        None,
        description="Delete each finished Job after this long. Default: keep it. Pulumi manages a one-off Job; "
        "once Kubernetes deletes it, `pulumi up --refresh` creates it again and the training runs again.",
    )


class DistributedTrainingWorkload(ModelOutput, WorkloadBase):
    """Distributed TensorFlow as a JobSet (one replicated job per task type)."""

    kind: Literal["distributedTraining"]
    strategy: Literal["multiWorkerMirrored", "parameterServer"] = Field("multiWorkerMirrored", description="tf.distribute strategy.")
    chief: StrictInt = Field(0, ge=0, le=1, validate_default=True, description="Chief replicas (0 or 1; TensorFlow allows at most one).")
    workers: PositiveCount = Field(2, le=256, description="Worker replicas.")
    ps: Count = Field(0, le=64, validate_default=True, description="Parameter servers (parameterServer strategy only).")
    evaluator: StrictInt = Field(0, ge=0, le=1, description="Evaluator replicas (0 or 1).")
    gpus_per_worker: Count = Field(
        0,
        description="GPUs per worker and evaluator pod, and per chief pod with multiWorkerMirrored (the parameterServer "
        "chief only coordinates; parameter servers get none).",
    )
    max_restarts: StrictInt = Field(3, ge=0, le=100, description="Restarts of the whole group before the job fails.")
    active_deadline: Duration | None = Field(
        None,
        description="Fail the job when one attempt of the group runs this long (e.g. 24h; the clock restarts when the "
        "group restarts). Default: no deadline.",
    )

    @field_validator("chief")
    @classmethod
    def _ps_strategy_needs_chief(cls, value: int, info: ValidationInfo) -> int:
        if info.data.get("strategy") == "parameterServer" and value != 1:
            raise problem("the parameterServer strategy needs a chief (its coordinator)", "set chief: 1")
        return value

    @field_validator("ps")
    @classmethod
    def _ps_needs_ps_strategy(cls, value: int, info: ValidationInfo) -> int:
        strategy = info.data.get("strategy")
        if value > 0 and strategy != "parameterServer":
            raise problem("parameter servers need the parameterServer strategy", "set strategy: parameterServer or ps: 0")
        if strategy == "parameterServer" and value == 0:
            raise problem("the parameterServer strategy needs parameter servers", "set ps to 1 or more")
        return value

    @field_validator("gpus")
    @classmethod
    def _gpus_per_worker_instead(cls, value: int) -> int:
        if value:
            raise problem("is not used by distributedTraining", "set gpusPerWorker (GPUs of each worker, chief and evaluator pod)")
        return value

    @property
    def replicas(self) -> dict[str, int]:
        """Task type -> pod count, in TF_CONFIG's order; only task types with pods."""
        counts = {"chief": self.chief, "worker": self.workers, "ps": self.ps, "evaluator": self.evaluator}
        return {task: n for task, n in counts.items() if n}

    def gpus_of(self, task: str) -> int:
        """GPUs of one pod of this task type."""
        if task == "ps" or (task == "chief" and self.strategy == "parameterServer"):
            return 0
        return self.gpus_per_worker

    @property
    def concurrent_gpus(self) -> int:
        return sum(self.gpus_of(task) * n for task, n in self.replicas.items())


Number = Annotated[float, pydantic.Strict()] | Annotated[int, pydantic.Strict()]


class ScaleToZeroSpec(Model):
    """Scale a model service to zero replicas when idle, and wake it on a metric that exists while it
    has none. Its own GPU and request metrics vanish with its last pod, so the wake-up signal must come
    from elsewhere: a caller's or a gateway's request rate for this service, a queue's length."""

    activation_query: str = Field(
        min_length=1, max_length=4000,
        description="PromQL returning one value, measured while the service has no replicas (e.g. a gateway's "
        "request rate to it). Requests sent while it is at zero fail until the first replica is ready.",
    )
    activation_threshold: Number = Field(
        0, ge=0, description="Wake the service from zero when the query's value exceeds this."
    )
    threshold: Number = Field(
        gt=0, description="While running, also scale on the query: its target value per replica."
    )


class AutoscaleSpec(Model):
    """KEDA autoscaling of a model service on its GPU utilization (and optionally request rate)."""

    min_replicas: Count = Field(1, le=100, description="Fewest replicas; 0 only with scaleToZero.")
    max_replicas: PositiveCount = Field(le=100, description="Most replicas; with the GPUs per replica this counts against the quota.")
    gpu_utilization: StrictInt = Field(70, ge=1, le=100, description="Target average GPU utilization (%) of the service's pods.")
    requests_per_second: Number | None = Field(
        None, gt=0, description="Also scale on TF Serving requests per second per replica (target). Default: GPU only."
    )
    # The HPA API caps stabilization windows at one hour.
    scale_up_stabilization: Duration | None = Field(
        None, le=3600, description="Wait this long before scaling up again (at most 1h). Default: none (fast)."
    )
    scale_down_stabilization: Duration = Field(
        300, le=3600, description="Scale down only to the highest recommendation of this window (at most 1h)."
    )
    scale_to_zero: ScaleToZeroSpec | None = Field(
        None, validate_default=True,
        description="Go down to zero replicas when idle, woken by an activation query (needs minReplicas: 0). Default: off.",
    )

    @field_validator("scale_to_zero")
    @classmethod
    def _zero_needs_activation(cls, value: ScaleToZeroSpec | None, info: ValidationInfo) -> ScaleToZeroSpec | None:
        low = info.data.get("min_replicas")
        if low == 0 and value is None:
            raise problem(
                "minReplicas is 0, but nothing would wake the service: its own metrics vanish with its last replica",
                "add scaleToZero with an activationQuery measured outside the service, or set minReplicas to 1 or more",
            )
        if value is not None and low not in (None, 0):
            raise problem(f"is set, but minReplicas is {low}", "set minReplicas: 0 to let the service scale to zero")
        return value

    @field_validator("max_replicas")
    @classmethod
    def _max_not_below_min(cls, value: int, info: ValidationInfo) -> int:
        low = info.data.get("min_replicas")
        if low is not None and value < low:
            raise problem(f"is below minReplicas ({low})", f"set maxReplicas to {low} or more, or lower minReplicas")
        return value


class BatchingSpec(Model):
    """TensorFlow Serving server-side batching (`--enable_batching`)."""

    max_batch_size: PositiveCount = Field(32, le=4096, description="Largest batch the server forms.")
    batch_timeout_micros: Count = Field(1000, le=10_000_000, description="Longest wait to fill a batch (microseconds).")
    max_enqueued_batches: PositiveCount = Field(100, le=100_000, description="Queued batches before requests are refused.")
    num_batch_threads: PositiveCount = Field(4, le=256, description="Batches processed in parallel.")


class ModelServiceWorkload(WorkloadBase):
    """TensorFlow Serving of one model, read from the models bucket (`<team>/<model>/<version>/`)."""

    kind: Literal["modelService"]
    model: ModelName = Field(description="Model name (path under the team's prefix in the models bucket).")
    version: PositiveCount | None = Field(
        None, description="Serve only this version. Default: the highest version; a newly uploaded version is served without a redeploy."
    )
    version_labels: dict[VersionLabel, PositiveCount] = Field(
        default_factory=dict,
        validate_default=True,
        description="Version labels (e.g. stable: 3, canary: 4); the service serves exactly these versions.",
    )
    replicas: PositiveCount = Field(1, le=100, description="Replicas when autoscale is not set (not with autoscale).")
    autoscale: AutoscaleSpec | None = Field(
        None,
        description="Scale with KEDA (replaces replicas): on GPU utilization, and on requestsPerSecond or scaleToZero's "
        "query. A service without GPUs needs requestsPerSecond or scaleToZero.",
    )
    batching: BatchingSpec | None = Field(None, description="Server-side batching. Default: off.")
    expose: Literal["cluster", "internal", "internet"] = Field(
        "cluster",
        description="cluster: ClusterIP Service. internal: an internal NLB in the VPC. internet: an internet-facing NLB "
        "(only if the platform allows it, and only from sourceCidrs).",
    )
    source_cidrs: list[Cidr] = Field(
        default_factory=list, validate_default=True, description="expose: internet only: client CIDRs the NLB accepts."
    )

    @field_validator("version_labels")
    @classmethod
    def _labels_or_version(cls, value: dict, info: ValidationInfo) -> dict:
        if value and info.data.get("version") is not None:
            raise problem("is set together with version", "pin one version with version, or serve labelled versions with versionLabels")
        return value

    @field_validator("source_cidrs")
    @classmethod
    def _cidrs_only_for_internet(cls, value: list, info: ValidationInfo) -> list:
        expose = info.data.get("expose")
        if expose == "internet" and not value:
            raise problem("an internet-facing service needs the client CIDRs it accepts", "list them in sourceCidrs")
        if value and expose != "internet":
            raise problem("is only used with expose: internet", "remove sourceCidrs, or set expose: internet")
        if any(c.prefixlen == 0 for c in value):
            raise problem("0.0.0.0/0 opens the service to the whole internet", "list your clients' CIDRs")
        return value

    @property
    def max_pods(self) -> int:
        return self.autoscale.max_replicas if self.autoscale else self.replicas


class DevEnvironmentWorkload(WorkloadBase):
    """JupyterLab + TensorBoard for one person, stopped when idle so its GPU goes back to the pool. The container
    always runs JupyterLab with cloudml's idle shutdown (no `command` of its own; `args` add JupyterLab options other
    than the ones cloudml sets), and maxSessionDuration ends even a session that never goes idle."""

    kind: Literal["devEnvironment"]
    idle_timeout: Duration = Field(7200, description="Stop the environment after it has been idle this long (default 2h).")
    max_session_duration: Duration = Field(
        DEFAULT_MAX_SESSION_SECONDS,
        description="Stop the environment after it has run this long, idle or not (the Job's activeDeadlineSeconds). "
        "Default 24h: a kernel kept busy or a program left running in a terminal never counts as idle, and without "
        "this backstop it would hold its GPUs for days; a working day fits. The home volume stays; "
        "`pulumi up --refresh` starts a new session.",
    )
    home_size: StorageQuantity = Field("50Gi", description="Size of the persistent home volume (counts against the storage quota).")
    expose: Literal["portForward", "internal"] = Field(
        "portForward", description="portForward: reach it with `kubectl port-forward`. internal: an internal NLB in the VPC."
    )

    @field_validator("command")
    @classmethod
    def _always_jupyter(cls, value: list[str]) -> list[str]:
        if value:
            raise problem(
                "would replace JupyterLab and its idle shutdown, so the environment and its GPUs would never be "
                "released when idle",
                "remove command; add JupyterLab options with args, and install or start tools with preCommands",
            )
        return value

    @field_validator("args")
    @classmethod
    def _keep_cloudml_jupyter_options(cls, value: list[str]) -> list[str]:
        overriding = [a for a in value if _overrides_jupyter_setting(a)]
        if overriding:
            names = ", ".join(dict.fromkeys(a.split("=", 1)[0] for a in overriding))
            raise problem(
                f"{names} would override what cloudml sets for JupyterLab (idle shutdown and culling, the access "
                "token and authentication, the address and port, config files)",
                "remove them; set idleTimeout and maxSessionDuration for when the environment stops",
            )
        return value


# The JupyterLab settings a devEnvironment's args may not touch (by trait name, whatever the class:
# traitlets lets a subclass's section, AsyncMappingKernelManager's say, override the one cloudml sets).
_JUPYTER_CLOUDML_TRAITS = frozenset({
    "shutdown_no_activity_timeout", "ip", "port", "sock", "token", "password", "hashed_password", "config", "config_file",
    # Classes that do the culling and the authentication.
    "kernel_manager_class", "identity_provider_class", "authorizer_class", "login_handler_class",
})


def _overrides_jupyter_setting(arg: str) -> bool:
    """Whether a command-line arg (`--Class.trait=value`, `--alias value`) sets a trait cloudml sets."""
    if not arg.startswith("-"):
        return False
    trait = arg.lstrip("-").split("=", 1)[0].rsplit(".", 1)[-1]
    return trait.startswith("cull") or trait in _JUPYTER_CLOUDML_TRAITS


SweepValue = Union[Annotated[int, pydantic.Strict()], Annotated[float, pydantic.Strict()], str, bool]


class SweepWorkload(WorkloadBase):
    """A hyperparameter sweep: one Indexed Job, one index per trial."""

    kind: Literal["sweep"]
    algorithm: Literal["grid", "random"] = Field("grid", description="grid: every combination; random: `trials` samples.")
    parameters: dict[EnvName, Annotated[list[SweepValue], Field(min_length=1)]] = Field(
        min_length=1, description="Parameter name -> values to try."
    )
    trials: PositiveCount | None = Field(
        None, le=MAX_SWEEP_TRIALS, validate_default=True, description="Trials for random search (grid: the number of combinations)."
    )
    seed: StrictInt = Field(
        0, ge=0, description="Seed of the random search (the same seed draws the same trials); random only."
    )
    parallelism: PositiveCount = Field(1, description="Trials run at the same time (at most the number of trials).")
    retries_per_trial: StrictInt = Field(1, ge=0, le=10, description="Retries of a failed trial (backoffLimitPerIndex).")
    max_failed_trials: Count = Field(
        0, validate_default=True, description="Failed trials tolerated before the sweep fails (maxFailedIndexes)."
    )

    @field_validator("parameters")
    @classmethod
    def _finite_values(cls, value: dict[str, list]) -> dict[str, list]:
        # NaN and infinities have no JSON form (the trials ConfigMap): refused here, not at render time.
        bad = sorted(name for name, values in value.items() if any(isinstance(v, float) and not math.isfinite(v) for v in values))
        if bad:
            raise problem(f"{', '.join(bad)} list a NaN or infinite value", "use finite numbers (or strings such as \"inf\")")
        return value

    @field_validator("seed")
    @classmethod
    def _seed_only_for_random(cls, value: int, info: ValidationInfo) -> int:
        # Runs only when the config gives seed (pydantic does not validate defaults).
        if info.data.get("algorithm") == "grid":
            raise problem("is only used by random search (a grid runs every combination, in order)",
                          "remove seed, or set algorithm: random")
        return value

    @field_validator("trials")
    @classmethod
    def _random_needs_trials(cls, value: int | None, info: ValidationInfo) -> int | None:
        algorithm = info.data.get("algorithm")
        if algorithm == "random" and value is None:
            raise problem("random search needs a number of trials", "set trials to how many samples to run")
        if algorithm == "grid" and value is not None:
            raise problem("is decided by the grid (every combination)", "remove trials, or set algorithm: random")
        parameters = info.data.get("parameters")
        if algorithm == "grid" and parameters and _grid_size(parameters) > MAX_SWEEP_TRIALS:
            raise problem(
                f"the grid has {_grid_size(parameters)} combinations; a sweep may run at most {MAX_SWEEP_TRIALS} trials",
                "try fewer values, or use algorithm: random with trials",
            )
        return value

    @field_validator("parallelism")
    @classmethod
    def _parallelism_within_trials(cls, value: int, info: ValidationInfo) -> int:
        trials = _trials_so_far(info)
        if trials is not None and value > trials:
            raise problem(f"is more than the {trials} trial(s) of the sweep", f"set parallelism to {trials} or less")
        return value

    @field_validator("max_failed_trials")
    @classmethod
    def _failures_within_trials(cls, value: int, info: ValidationInfo) -> int:
        trials = _trials_so_far(info)
        if trials is not None and value >= trials:
            raise problem(f"tolerates every one of the {trials} trial(s) failing", f"set maxFailedTrials below {trials}")
        return value

    def trial_count(self) -> int:
        """How many trials the sweep runs (the Indexed Job's completions)."""
        return (self.trials or 0) if self.algorithm == "random" else _grid_size(self.parameters)


def _trials_so_far(info: ValidationInfo) -> int | None:
    if info.data.get("parameters") is None:
        return None
    if info.data.get("algorithm") == "random":
        return info.data.get("trials")  # None: reported at `trials`
    return _grid_size(info.data["parameters"])


def _grid_size(parameters: dict[str, list]) -> int:
    return math.prod(len(values) for values in parameters.values())


class BucketPath(Model):
    """A path under the team's own prefix of a platform bucket: `s3://<bucket>/<team>/<path>/`."""

    bucket: Literal["datasets", "models", "checkpoints", "logs"] = Field("datasets", description="Which platform bucket.")
    path: SubPath = Field(description="Path under the team's prefix, e.g. scoring/incoming.")


class PredictionOutput(BucketPath):
    """Where batch predictions go: a path under the team's own prefix of a platform bucket other than models."""

    bucket: Literal["datasets", "checkpoints", "logs"] = Field(
        "datasets", description="Which platform bucket (not models: that is what model services serve)."
    )

    @field_validator("bucket", mode="before")
    @classmethod
    def _not_into_served_models(cls, value: object) -> object:
        if value == "models":
            raise problem(
                "is where model services and batch predictions load model versions from; predictions written there "
                "would mix with the served models",
                "write predictions to the datasets bucket (the default) or the logs bucket",
            )
        return value


class BatchPredictionWorkload(WorkloadBase):
    """Batch inference: the trainer image's predict mode over an S3 prefix, once or on a schedule."""

    kind: Literal["batchPrediction"]
    model: ModelName = Field(description="Model to predict with: the model of a training or distributedTraining workload, or a modelService's model.")
    model_version: PositiveCount | None = Field(None, description="Model version. Default: the highest version at start.")
    input: BucketPath = Field(description="Where the input records are: a path under the team's prefix of a platform bucket.")
    output: PredictionOutput = Field(
        description="Where the predictions go: a path under the team's prefix of a platform bucket (not models)."
    )
    schedule: CronSchedule | None = Field(None, description="Cron schedule; makes the Job a CronJob (concurrencyPolicy Forbid).")
    backoff_limit: StrictInt = Field(2, ge=0, le=100, description="Pod retries before the Job fails.")
    active_deadline: Duration | None = Field(None, description="Give up after this long. Default: no deadline.")


class TensorboardWorkload(WorkloadBase):
    """TensorBoard over the logs of another workload."""

    kind: Literal["tensorboard"]
    logs_from: WorkloadName = Field(description="Name of the training, distributedTraining or sweep workload whose logs to show.")
    expose: Literal["portForward", "internal"] = Field(
        "portForward", description="portForward: reach it with `kubectl port-forward`. internal: an internal NLB in the VPC."
    )


Workload = Annotated[
    Union[
        TrainingWorkload,
        DistributedTrainingWorkload,
        ModelServiceWorkload,
        DevEnvironmentWorkload,
        SweepWorkload,
        BatchPredictionWorkload,
        TensorboardWorkload,
    ],
    Field(discriminator="kind"),
]


class TeamDefaults(Model):
    """Values a workload takes when it does not set its own."""

    image: Image | None = Field(
        None, description="Default image of training, distributedTraining, sweep, batchPrediction and tensorboard workloads (the trainer)."
    )
    serving_image: Image = Field(DEFAULT_SERVING_IMAGE, description="Default image of modelService workloads (TensorFlow Serving).")
    dev_image: Image = Field(DEFAULT_DEV_IMAGE, description="Default image of devEnvironment workloads (JupyterLab).")
    gpu_type: str | None = Field(None, description="Default GPU model for workloads that ask for GPUs.")
    cpu: CpuQuantity = Field("2", description="Default CPU request and limit.")
    memory: MemoryQuantity = Field("8Gi", description="Default memory request and limit.")


class TeamSpec(Model):
    """`cloudml:team`: one team's workloads, deployed into the namespace its platform made."""

    name: TeamName = Field(description="Team name; must be a team of the platform stack.")
    platform_stack: str = Field(
        pattern=r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$",
        max_length=300,
        description="The platform stack this team runs on: <org>/<project>/<stack> (StackReference name).",
    )
    defaults: TeamDefaults = Field(default_factory=TeamDefaults, description="Workload defaults.")
    secrets: dict[SecretName, Annotated[dict[SecretKey, SecretStr], Field(min_length=1)]] = Field(
        default_factory=dict,
        description="Kubernetes Secrets of the team: name -> key -> value. Set every value with "
        "`pulumi config set --secret --path 'cloudml:team.secrets.<name>.<key>'`; workloads read them with secretEnv.",
    )
    workloads: list[Workload] = Field(default_factory=list, description="The team's workloads.")

    @property
    def namespace(self) -> str:
        return team_namespace(self.name)

    @property
    def platform_stack_name(self) -> str:
        """The last segment of platformStack: the stack's name in stacks/."""
        return self.platform_stack.rsplit("/", 1)[-1]


TRAINING_LIKE_KINDS = ("training", "distributedTraining", "sweep")


# --- loading ----------------------------------------------------------------------------------


def _check_max(value: int, info: ValidationInfo) -> int:
    low = info.data.get("min")
    if low is not None and value < low:
        raise problem(f"is below min ({low})", f"set max to {low} or more, or lower min")
    return value


def _load(model: type[BaseModel], raw: Any, root: str, stack_rules) -> Any:
    """Field checks first (all at once); then, on a well-formed config, the stack-wide rules."""
    if raw is None:
        raise ConfigError([ConfigProblem(root, "is not set", f"add `{root}:` to the stack's config")])
    try:
        spec = model.model_validate(raw)
    except pydantic.ValidationError as error:
        raise ConfigError(from_pydantic(root, model, error)) from None
    problems = stack_rules(spec)
    if problems:
        raise ConfigError(problems)
    return spec


def load_platform(raw: Any) -> PlatformSpec:
    """Validate `cloudml:platform` config; raise ConfigError with every problem."""
    # The platform's components know rules of their own (bucket names S3 reserves, claims that must
    # fit the storage quota); they join this round. Imported here: components.platform imports spec.
    from components.platform import component_problems

    return _load(PlatformSpec, raw, PLATFORM_KEY, lambda spec: platform_problems(spec) + component_problems(spec))


def load_team(raw: Any) -> TeamSpec:
    """Validate `cloudml:team` config; raise ConfigError with every problem."""
    return _load(TeamSpec, raw, TEAM_KEY, team_problems)


def parse_team(raw: Any) -> TeamSpec:
    """Field checks only; the caller runs team_problems with its own cross-stack checks, so a
    user sees those problems in one round."""
    return _load(TeamSpec, raw, TEAM_KEY, lambda spec: [])


def platform_problems(spec: PlatformSpec) -> list[ConfigProblem]:
    """Rules over the whole platform stack."""
    problems = []
    seen: dict[str, int] = {}
    for i, pool in enumerate(spec.gpu_pools):
        # EKS caps node group names at 63: <platform>-nodes-gpu-<pool> plus Pulumi's 8-character suffix.
        group_name_length = len(spec.name) + len("-nodes-gpu-") + len(pool.name) + 8
        if group_name_length > 63:
            problems.append(ConfigProblem(
                format_path(PLATFORM_KEY, ["gpuPools", i, "name"]),
                f"with platform name {spec.name} makes a node group name of {group_name_length} characters; EKS allows 63",
                f"shorten the pool name to {63 - 8 - len('-nodes-gpu-') - len(spec.name)} characters or fewer, or the platform name",
                display_value(pool.name),
            ))
        if pool.name in seen:
            problems.append(ConfigProblem(
                format_path(PLATFORM_KEY, ["gpuPools", i, "name"]),
                f"is already the name of gpuPools[{seen[pool.name]}]",
                "give every GPU pool its own name",
                display_value(pool.name),
            ))
        seen.setdefault(pool.name, i)
    for i, arn in enumerate(spec.admins):
        if arn in spec.admins[:i]:
            problems.append(ConfigProblem(
                format_path(PLATFORM_KEY, ["admins", i]), f"is already admins[{spec.admins.index(arn)}]",
                "list each admin once", display_value(arn),
            ))
    if not spec.admins:
        problems.append(ConfigProblem(
            format_path(PLATFORM_KEY, ["admins"]),
            "is empty, so no one could reach the cluster (cloudml grants no implicit creator-admin)",
            "list the IAM role you run `pulumi up` with, e.g. arn:aws:iam::111122223333:role/platform-admins",
        ))
    capacity = spec.pool_capacity_gpus()
    for team, tenant in spec.teams.items():
        if tenant.gpu_quota > capacity:
            problems.append(ConfigProblem(
                format_path(PLATFORM_KEY, ["teams", team, "gpuQuota"]),
                f"is more than the {capacity} GPU(s) all GPU pools can supply at their max size",
                f"lower the quota to {capacity} or less, or raise gpuPools[].max",
                display_value(tenant.gpu_quota),
            ))
    return problems


def platform_warnings(spec: PlatformSpec) -> list[str]:
    """Things that are allowed but worth a look."""
    warnings = []
    total = sum(t.gpu_quota for t in spec.teams.values())
    capacity = spec.pool_capacity_gpus()
    if total > capacity:
        warnings.append(
            f"{PLATFORM_KEY}.teams: the GPU quotas add up to {total}, {total - capacity} more than the {capacity} "
            "GPU(s) the pools reach at max size; teams may wait for GPUs when all use their quota at once"
        )
    if not spec.endpoint.public_access_cidrs and not spec.endpoint.private_access_cidrs:
        warnings.append(
            f"{PLATFORM_KEY}.endpoint: nothing outside the cluster can reach the Kubernetes API (private endpoint, no "
            "privateAccessCidrs); run `pulumi up` from inside the VPC, or list your VPN/CI networks in privateAccessCidrs"
        )
    if spec.storage.lustre.enabled:
        warnings.append(
            f"{PLATFORM_KEY}.storage.lustre: the file system is created, but pods cannot mount it yet (no FSx CSI driver "
            "in this version) and its link imports the whole datasets bucket, every team's prefix"
        )
    return warnings


def workload_ref(workload: WorkloadBase) -> str:
    """How a stack-wide problem names the workload its path points at: `(workload resnet-nightly)`."""
    return f"(workload {workload.name})"


def team_problems(spec: TeamSpec) -> list[ConfigProblem]:
    """Rules over the whole team stack that need no platform."""
    problems = []
    first_index: dict[str, int] = {}
    for i, workload in enumerate(spec.workloads):
        path = ["workloads", i]
        ref = workload_ref(workload)
        if workload.name in first_index:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "name"]),
                f"{ref} is already the name of workloads[{first_index[workload.name]}]",
                "give every workload its own name",
                display_value(workload.name),
            ))
        first_index.setdefault(workload.name, i)
        if len(spec.name) + 1 + len(workload.name) > 63:
            # `app.kubernetes.io/instance: <team>-<workload>` is a label value, at most 63 characters.
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "name"]),
                f"{ref} with team name {spec.name} makes the instance label {len(spec.name) + 1 + len(workload.name)} "
                "characters long; Kubernetes allows 63",
                f"shorten it to {62 - len(spec.name)} characters or fewer",
                display_value(workload.name),
            ))
        if workload.image is None and spec.defaults.image is None and workload.kind not in OWN_DEFAULT_IMAGE_KINDS:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "image"]),
                f"{ref} is not set and there is no defaults.image",
                "set image on the workload or defaults.image for the stack",
            ))
        if requested_gpus(workload) == 0 and workload.gpu_type is not None:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "gpuType"]),
                f"{ref} is set, but the workload asks for no GPUs",
                "remove gpuType, or ask for GPUs (gpus, or gpusPerWorker for distributedTraining)",
                display_value(workload.gpu_type),
            ))
        if requested_gpus(workload) > 0 and workload.gpu_type is None and spec.defaults.gpu_type is None:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "gpuType"]),
                f"{ref} is not set and there is no defaults.gpuType, but the workload asks for GPUs",
                "set gpuType on the workload (e.g. a10g) or defaults.gpuType for the stack",
            ))
        for name, secret_ref in workload.secret_env.items():
            keys = spec.secrets.get(secret_ref.secret)
            if keys is None:
                problems.append(ConfigProblem(
                    format_path(TEAM_KEY, [*path, "secretEnv", name, "secret"]),
                    f"{ref} names no secret of this stack",
                    f"add it under cloudml:team.secrets, or use one of: {', '.join(sorted(spec.secrets)) or '(none defined)'}",
                    display_value(secret_ref.secret),
                ))
            elif secret_ref.key not in keys:
                problems.append(ConfigProblem(
                    format_path(TEAM_KEY, [*path, "secretEnv", name, "key"]),
                    f"{ref} is not a key of secret {secret_ref.secret}",
                    f"use one of: {', '.join(sorted(keys))}, or add the key to the secret",
                    display_value(secret_ref.key),
                ))
        if (workload.pre_commands or workload.post_commands) and not workload.command and workload.kind in COMMAND_REQUIRED_KINDS:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "command"]),
                f"{ref} is not set, but preCommands/postCommands wrap the main command",
                "set command (the image's entrypoint and its arguments), or remove preCommands and postCommands",
            ))
        for name in sorted(KIND_RESERVED_ENV.get(workload.kind, frozenset()) & (set(workload.env) | set(workload.secret_env))):
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "env" if name in workload.env else "secretEnv", name]),
                f"{ref} is set by cloudml for a {workload.kind}",
                "remove it (the access token comes from the generated Secret, HOME is the home volume)",
            ))
        reserved_path = KIND_RESERVED_PATHS.get(workload.kind)
        for j, mount in enumerate(workload.volumes if reserved_path else []):
            trimmed = mount.mount_path.rstrip("/")
            # At or above the path hides the kind's own volume; below a read-only one (TensorBoard's
            # logs) the mount point cannot be created. A dev environment may nest mounts in its home.
            hides = trimmed == reserved_path or reserved_path.startswith(trimmed + "/")
            inside_read_only = workload.kind == "tensorboard" and trimmed.startswith(reserved_path + "/")
            if hides or inside_read_only:
                problems.append(ConfigProblem(
                    format_path(TEAM_KEY, [*path, "volumes", j, "mountPath"]),
                    f"{ref} overlaps {reserved_path}, where a {workload.kind} mounts its own volume",
                    f"mount it elsewhere, outside {reserved_path}",
                    display_value(mount.mount_path),
                ))
        if isinstance(workload, TensorboardWorkload) and workload.gpus:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "gpus"]),
                f"{ref} is more than 0, but TensorBoard does not use GPUs",
                "remove gpus from the tensorboard workload",
                display_value(workload.gpus),
            ))
        if isinstance(workload, ModelServiceWorkload):
            problems += _model_service_problems(workload, path)
        if isinstance(workload, SweepWorkload):
            problems += _sweep_size_problems(workload, path)
    for i, workload in enumerate(spec.workloads):
        if isinstance(workload, DevEnvironmentWorkload) and token_secret_name(workload.name) in spec.secrets:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, ["secrets", token_secret_name(workload.name)]),
                f"has the name of the Secret cloudml generates for devEnvironment {workload.name}'s access token",
                "rename the secret (and the secretEnv references to it)",
            ))
    kinds = {w.name: w.kind for w in spec.workloads}
    models = model_names(spec)
    for i, workload in enumerate(spec.workloads):
        if isinstance(workload, TensorboardWorkload) and kinds.get(workload.logs_from) not in TRAINING_LIKE_KINDS:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, ["workloads", i, "logsFrom"]),
                f"{workload_ref(workload)} names no training, distributedTraining or sweep workload of this stack",
                f"use one of: {', '.join(n for n, k in kinds.items() if k in TRAINING_LIKE_KINDS) or '(none defined)'}",
                display_value(workload.logs_from),
            ))
        if isinstance(workload, BatchPredictionWorkload) and workload.model not in models:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, ["workloads", i, "model"]),
                f"{workload_ref(workload)} is a model no training, distributedTraining or modelService workload of "
                "this stack names",
                f"use one of: {', '.join(sorted(models)) or '(none defined)'}",
                display_value(workload.model),
            ))
    problems += _name_collision_problems(spec)
    return problems


def _model_service_problems(workload: ModelServiceWorkload, path: list) -> list[ConfigProblem]:
    """Keys a model service would silently ignore, and autoscaling with nothing to scale on."""
    problems = []
    ref = workload_ref(workload)
    autoscale = workload.autoscale
    if autoscale is not None and "replicas" in workload.model_fields_set:
        problems.append(ConfigProblem(
            format_path(TEAM_KEY, [*path, "replicas"]),
            f"{ref} is set together with autoscale, which decides the replicas",
            "remove replicas; autoscale.minReplicas and maxReplicas decide",
            display_value(workload.replicas),
        ))
    if autoscale is not None and workload.gpus == 0:
        if autoscale.requests_per_second is None and autoscale.scale_to_zero is None:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "autoscale"]),
                f"{ref} would scale on GPU utilization, but the service has no GPUs: it would stay at minReplicas",
                "set autoscale.requestsPerSecond (requests per second per replica) or autoscale.scaleToZero, "
                "or give the service gpus",
            ))
        if "gpu_utilization" in autoscale.model_fields_set:
            problems.append(ConfigProblem(
                format_path(TEAM_KEY, [*path, "autoscale", "gpuUtilization"]),
                f"{ref} is set, but the service has no GPUs to measure",
                "remove gpuUtilization, or give the service gpus",
                display_value(autoscale.gpu_utilization),
            ))
    return problems


def _sweep_size_problems(workload: SweepWorkload, path: list) -> list[ConfigProblem]:
    # The trials are computed where they are rendered; imported here, since that module imports this one.
    from components.workloads.sweep import trials_config_bytes

    size = trials_config_bytes(workload)
    if size <= MAX_SWEEP_CONFIG_BYTES:
        return []
    return [ConfigProblem(
        format_path(TEAM_KEY, [*path, "parameters"]),
        f"{workload_ref(workload)} makes {size:,} bytes of trial parameters for its ConfigMap "
        f"{trials_config_map_name(workload.name)}; Kubernetes keeps at most 1 MiB in one ConfigMap "
        f"(cloudml allows {MAX_SWEEP_CONFIG_BYTES:,} bytes)",
        "run fewer trials (fewer values, or a lower trials count) or shorten the parameter names and values",
    )]


def generated_objects(workload: WorkloadBase) -> set[tuple[str, str]]:
    """(Kubernetes kind, name) of every object the workload puts in the namespace with a name cloudml
    decides: its own objects and the ones its controllers make (JobSet's Jobs and headless Service,
    the devEnvironment's token Secret). Names with generated suffixes (pods, ReplicaSets, a CronJob's
    Jobs `<name>-<minutes>`) are left out; `_name_collision_problems` checks the CronJob's runs."""
    name = workload.name
    if isinstance(workload, (TrainingWorkload, BatchPredictionWorkload)):
        return {("CronJob" if workload.schedule else "Job", name)}
    if isinstance(workload, DistributedTrainingWorkload):
        return {("JobSet", name), ("Service", name), *(("Job", jobset_job_name(name, task)) for task in workload.replicas)}
    if isinstance(workload, ModelServiceWorkload):
        objects = {("ConfigMap", serving_config_map_name(name)), ("Deployment", name), ("Service", name),
                   ("PodDisruptionBudget", name)}
        return objects | ({("ScaledObject", name)} if workload.autoscale else set())
    if isinstance(workload, DevEnvironmentWorkload):
        return {("PersistentVolumeClaim", home_claim_name(name)), ("Job", name), ("Service", name),
                ("Secret", token_secret_name(name))}
    if isinstance(workload, SweepWorkload):
        return {("ConfigMap", trials_config_map_name(name)), ("Job", name)}
    return {("Deployment", name), ("Service", name)}  # tensorboard


def _cronjob_runs(workload: WorkloadBase) -> re.Pattern | None:
    """A CronJob names each run's Job `<cronjob>-<scheduled time in minutes since 1970>`: 8 digits
    from 1989 to 2160, so `resnet-2` beside a CronJob `resnet` is no collision."""
    if getattr(workload, "schedule", None):
        return re.compile(re.escape(workload.name) + r"-\d{8}")
    return None


def _name_collision_problems(spec: TeamSpec) -> list[ConfigProblem]:
    """Two workloads must not make an object of the same kind and name: the second would replace the
    first, or fail to be created (a training `dist-worker-0` beside distributedTraining `dist`)."""
    problems = []
    objects = [generated_objects(w) for w in spec.workloads]
    for j, later in enumerate(spec.workloads):
        for i, earlier in enumerate(spec.workloads[:j]):
            if earlier.name == later.name:
                continue  # reported as a duplicate name
            shared = sorted(objects[i] & objects[j])
            for first, second in ((earlier, objects[j]), (later, objects[i])):
                runs = _cronjob_runs(first)
                if runs is not None:
                    shared += sorted(("Job", n) for kind, n in second if kind == "Job" and runs.fullmatch(n))
            if shared:
                described = ", ".join(f"{kind} {name}" for kind, name in dict.fromkeys(shared))
                problems.append(ConfigProblem(
                    format_path(TEAM_KEY, ["workloads", j, "name"]),
                    f"{workload_ref(later)} and workload {earlier.name} (workloads[{i}]) would both make {described}; "
                    "one would replace the other or fail to be created",
                    f"rename workload {later.name} or {earlier.name}",
                    display_value(later.name),
                ))
    return problems


# Kinds with a default image of their own (defaults.servingImage, defaults.devImage).
OWN_DEFAULT_IMAGE_KINDS = ("modelService", "devEnvironment")
# Environment variables a kind's template sets itself (CLOUDML_* and TF_CONFIG are refused for every kind).
KIND_RESERVED_ENV = {"devEnvironment": frozenset({"JUPYTER_TOKEN", "HOME"})}
# Where a kind mounts its own volume: the home of a dev environment, the logs TensorBoard reads.
KIND_RESERVED_PATHS = {"devEnvironment": "/home/cloudml", "tensorboard": "/logs"}
def token_secret_name(workload: str) -> str:
    """The Secret holding a devEnvironment's generated access token (made by the Team component)."""
    return f"{workload}-token"


def home_claim_name(workload: str) -> str:
    """A devEnvironment's home PersistentVolumeClaim."""
    return f"{workload}-home"


def serving_config_map_name(workload: str) -> str:
    """A modelService's ConfigMap of TensorFlow Serving config files."""
    return f"{workload}-serving"


def trials_config_map_name(workload: str) -> str:
    """A sweep's ConfigMap of trial parameters."""
    return f"{workload}-trials"


def jobset_job_name(jobset: str, replicated_job: str) -> str:
    """The Job JobSet makes for a replicated job (cloudml renders one Job per replicated job: index 0)."""
    return f"{jobset}-{replicated_job}-0"


# Kinds whose container command is the user's (the others run a command cloudml knows).
COMMAND_REQUIRED_KINDS = ("training", "distributedTraining", "sweep")


def model_names(spec: TeamSpec) -> set[str]:
    """Models the stack produces (training kinds) or serves (modelService)."""
    names = {w.model_name for w in spec.workloads if isinstance(w, (TrainingWorkload, DistributedTrainingWorkload))}
    return names | {w.model for w in spec.workloads if isinstance(w, ModelServiceWorkload)}


def requested_gpus(workload: WorkloadBase) -> int:
    """GPUs one GPU pod of the workload asks for."""
    if isinstance(workload, DistributedTrainingWorkload):
        return workload.gpus_per_worker
    return workload.gpus


ROLLOUT_SURGE = 1
# The TensorBoard sidecar of a dev environment (requests = limits), counted against the quota too.
DEV_TENSORBOARD_CPU = "500m"
DEV_TENSORBOARD_MEMORY = "1Gi"


def concurrent_pods(workload: WorkloadBase) -> int:
    """Pods the workload can run at once (a CronJob forbids overlapping runs: one)."""
    if isinstance(workload, DistributedTrainingWorkload):
        return sum(workload.replicas.values())
    if isinstance(workload, ModelServiceWorkload):
        return workload.max_pods + ROLLOUT_SURGE
    if isinstance(workload, SweepWorkload):
        return workload.parallelism
    return 1


def concurrent_cpu_memory(workload: WorkloadBase, defaults: TeamDefaults) -> tuple[int, int]:
    """(millicores, bytes) the workload can request at once: what the team's CPU and memory quota count."""
    pods = concurrent_pods(workload)
    cpu = cpu_millis(workload.cpu or defaults.cpu)
    memory = quantity_bytes(workload.memory or defaults.memory)
    if isinstance(workload, DevEnvironmentWorkload):
        cpu += cpu_millis(DEV_TENSORBOARD_CPU)
        memory += quantity_bytes(DEV_TENSORBOARD_MEMORY)
    return pods * cpu, pods * memory


def load_balancers(workload: WorkloadBase) -> int:
    """LoadBalancer Services the workload makes (the quota's services.loadbalancers)."""
    return int(getattr(workload, "expose", "cluster") in ("internal", "internet"))


def concurrent_gpus(workload: WorkloadBase) -> int:
    """GPUs the workload can hold at once: what counts against the team's quota."""
    if isinstance(workload, DistributedTrainingWorkload):
        return workload.concurrent_gpus
    if isinstance(workload, ModelServiceWorkload):
        # A rolling update starts one extra pod before it stops an old one (maxSurge 1): at the quota
        # without room for it, every rollout would wait for GPUs forever.
        return workload.gpus * (workload.max_pods + ROLLOUT_SURGE)
    if isinstance(workload, SweepWorkload):
        return workload.gpus * workload.parallelism
    return workload.gpus
