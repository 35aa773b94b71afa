"""Team tenancy: the objects that fence a team in (namespace, quota, limit range, network policies),
its IRSA role limited to the team's S3 prefixes, its data volumes (pre-bound read-only Mountpoint for
S3 volumes of its own prefixes, the shared EFS claim), and its admins' namespace-scoped EKS access.

Pure builders first (rendered objects, the S3 policy, the admin grouping), then the component's exact
child contract under the plan's Pulumi mocks.
"""

from __future__ import annotations

import copy
import fnmatch
import json

import kubernetes_validate
import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
from conftest import run_components
from k8s_schema import schema_errors

from components.errors import ConfigError
from components.platform import tenancy as tenancy_module
from components.platform.cluster import principal_key
from components.platform.irsa import trust_policy
from components.platform.storage import team_volumes, volume_objects, volume_quota_problems
from components.platform.tenancy import (
    BUCKET_ROLES,
    EDIT_POLICY,
    Tenancy,
    service_account_metadata,
    team_admin_namespaces,
    team_labels,
    team_s3_policy,
    tenancy_objects,
)
from components.spec import DevEnvironmentWorkload, PlatformSpec, load_platform

KUBERNETES_VERSION = "1.31.0"
PLATFORM_ADMIN = "arn:aws:iam::111122223333:role/platform-admins"
VISION_LEAD = "arn:aws:iam::111122223333:role/vision-leads"
SHARED_LEAD = "arn:aws:iam::111122223333:user/ml-lead"
VPC_CIDR = "10.40.0.0/16"
BUCKETS = {role: f"arn:aws:s3:::ml-x-{role}-a1b2c3" for role in BUCKET_ROLES}
BUCKET_NAMES = {role: arn.removeprefix("arn:aws:s3:::") for role, arn in BUCKETS.items()}
REGION = "us-west-2"
KMS_KEY = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OIDC_PROVIDER = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC"
OIDC_ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/ABC"

CONFIG = {
    "name": "ml-x",
    "admins": [PLATFORM_ADMIN],
    "gpuPools": [{"name": "a10g", "instanceTypes": ["g5.12xlarge"], "max": 4}],
    "teams": {
        "vision": {
            "gpuQuota": 12, "cpuQuota": "48", "memoryQuota": "384Gi", "storageQuota": "1Ti", "loadBalancers": 1,
            "defaultContainerCpu": "500m", "defaultContainerMemory": "1Gi",
            # A platform admin listed as a team admin too: already cluster-admin, gets nothing more.
            "admins": [VISION_LEAD, SHARED_LEAD, PLATFORM_ADMIN],
        },
        "nlp": {"gpuQuota": 0, "admins": [SHARED_LEAD]},
    },
}
LABELS = {
    "app.kubernetes.io/part-of": "cloudml",
    "app.kubernetes.io/managed-by": "cloudml",
    "app.kubernetes.io/component": "tenancy",
    "app.kubernetes.io/name": "vision",
    "app.kubernetes.io/instance": "ml-x-vision",
    "cloudml.io/team": "vision",
}


# The load balancer reaches model-service pods only on TF Serving's gRPC and REST ports.
SERVING_PORTS = [{"protocol": "TCP", "port": 8500}, {"protocol": "TCP", "port": 8501}]


@pytest.fixture(scope="module")
def spec():
    return load_platform(CONFIG)


@pytest.fixture(scope="module")
def objects(spec) -> dict[tuple[str, str], dict]:
    rendered = tenancy_objects(spec, "vision", spec.teams["vision"], vpc_cidr=VPC_CIDR)
    by_key = {(o["kind"], o["metadata"]["name"]): o for o in rendered}
    assert len(by_key) == len(rendered), "two objects share a kind and name"
    return by_key


def policy_spec(objects, name: str) -> dict:
    return objects[("NetworkPolicy", name)]["spec"]


# --- rendered objects -------------------------------------------------------------------------


def test_tenancy_objects_are_exactly_these(objects):
    """A team's ConfigGroup holds its namespace, quota, limit range and seven network policies, nothing else
    (the service account is its own resource, see the component tests)."""
    assert sorted(objects) == sorted([
        ("Namespace", "team-vision"),
        ("ResourceQuota", "vision-quota"),
        ("LimitRange", "vision-container-defaults"),
        ("NetworkPolicy", "default-deny"),
        ("NetworkPolicy", "allow-dns"),
        ("NetworkPolicy", "allow-same-namespace"),
        ("NetworkPolicy", "allow-monitoring"),
        ("NetworkPolicy", "allow-load-balancer"),
        ("NetworkPolicy", "allow-load-balancer-tools"),
        ("NetworkPolicy", "allow-https-egress"),
    ])
    for (kind, _), obj in objects.items():
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == "team-vision", kind
        assert obj["metadata"]["labels"].items() >= LABELS.items(), kind


def test_every_tenancy_object_is_valid_kubernetes_1_31(spec, objects):
    """Each rendered object, and the service account the component creates, passes the official 1.31
    OpenAPI schema in strict mode (an unknown or misspelt field fails)."""
    service_account = {"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": service_account_metadata(spec.name, "vision", "arn:aws:iam::111122223333:role/x")}
    checked = [*objects.values(), service_account]
    assert len(checked) >= 4  # namespace, quota, limit range, policies: nothing vacuous
    for obj in checked:
        # validate raises on the first schema violation and returns the schema version it used
        assert kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True) == "1.31"


def test_namespace_enforces_pod_security_restricted(objects):
    """The namespace carries exactly the cloudml labels and Pod Security `restricted` in enforce, audit and warn."""
    assert objects[("Namespace", "team-vision")]["metadata"]["labels"] == {
        **LABELS,
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }


def test_quota_keys_are_exact_and_gpus_are_quotad_by_request(objects):
    """The quota limits GPUs by `requests.nvidia.com/gpu` (never the unenforced plain key), cpu and memory
    requests and limits, storage, PVC count and LoadBalancer services; every value a string quantity."""
    hard = objects[("ResourceQuota", "vision-quota")]["spec"]["hard"]
    assert hard == {
        "requests.nvidia.com/gpu": "12",
        "requests.cpu": "48",
        "limits.cpu": "48",
        "requests.memory": "384Gi",
        "limits.memory": "384Gi",
        "requests.storage": "1Ti",
        "count/persistentvolumeclaims": "100",
        "services.loadbalancers": "1",
    }
    assert all(isinstance(v, str) for v in hard.values())


def test_zero_gpu_quota_is_the_string_zero(spec):
    """A CPU-only team gets a GPU quota of "0" (no GPUs), not a missing key (unlimited)."""
    rendered = tenancy_objects(spec, "nlp", spec.teams["nlp"], vpc_cidr=VPC_CIDR)
    quota = next(o for o in rendered if o["kind"] == "ResourceQuota")
    assert quota["spec"]["hard"]["requests.nvidia.com/gpu"] == "0"


def test_limit_range_gives_containers_the_tenant_defaults(objects):
    """A container that sets no cpu/memory gets the tenant's defaultContainerCpu/Memory as request and limit,
    so the quota (which covers requests and limits) admits it and counts it."""
    assert objects[("LimitRange", "vision-container-defaults")]["spec"] == {"limits": [{
        "type": "Container",
        "default": {"cpu": "500m", "memory": "1Gi"},
        "defaultRequest": {"cpu": "500m", "memory": "1Gi"},
    }]}


def test_default_deny_selects_every_pod_both_ways_with_no_rules(objects):
    """The baseline: every pod of the namespace, ingress and egress, and no rule that allows anything."""
    assert policy_spec(objects, "default-deny") == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_dns_egress_only_to_kube_dns_on_port_53(objects):
    """Pods may resolve names: egress to CoreDNS pods (k8s-app=kube-dns) in kube-system, UDP and TCP 53 only."""
    assert policy_spec(objects, "allow-dns") == {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{
            "to": [{
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        }],
    }


def test_pods_of_the_namespace_reach_each_other(objects):
    """Distributed training and TensorBoard: ingress from and egress to pods of the same namespace only
    (a bare podSelector peer means this namespace)."""
    assert policy_spec(objects, "allow-same-namespace") == {
        "podSelector": {},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"podSelector": {}}]}],
        "egress": [{"to": [{"podSelector": {}}]}],
    }


def test_monitoring_namespace_may_scrape(objects):
    """Prometheus scrapes: ingress from the `monitoring` namespace (by its immutable name label) only."""
    assert policy_spec(objects, "allow-monitoring") == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}],
    }


def test_load_balancer_ingress_from_the_vpc_reaches_only_model_service_pods(objects):
    """NLB traffic and health checks arrive from the VPC; pod IPs are VPC IPs too, so only model service
    pods accept the VPC CIDR (other pods stay closed to other teams)."""
    assert policy_spec(objects, "allow-load-balancer") == {
        "podSelector": {"matchLabels": {"app.kubernetes.io/component": "modelService"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": VPC_CIDR}}], "ports": SERVING_PORTS}],
    }


def test_load_balancer_ingress_reaches_tools_only_when_they_asked_for_it_and_only_on_their_ports(objects):
    """JupyterLab (8888) and TensorBoard (6006) behind an internal NLB get VPC traffic only when the
    workload set `expose: internal` (the renderer's cloudml.io/expose label); tools on port-forward and
    every other pod stay closed."""
    assert policy_spec(objects, "allow-load-balancer-tools") == {
        "podSelector": {
            "matchLabels": {"cloudml.io/expose": "internal"},
            "matchExpressions": [
                {"key": "app.kubernetes.io/component", "operator": "In", "values": ["devEnvironment", "tensorboard"]}],
        },
        "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": VPC_CIDR}}],
                     "ports": [{"protocol": "TCP", "port": 8888}, {"protocol": "TCP", "port": 6006}]}],
    }


def test_internet_facing_cidrs_join_the_load_balancer_sources():
    """With internet-facing NLBs allowed, their accepted client CIDRs are also admitted to model services
    (in case a service keeps the client IP); the rest of the namespace is unaffected."""
    config = copy.deepcopy(CONFIG)
    config["loadBalancing"] = {"allowInternetFacing": True, "internetFacingCidrs": ["203.0.113.0/24"]}
    platform = load_platform(config)
    rendered = tenancy_objects(platform, "vision", platform.teams["vision"], vpc_cidr=VPC_CIDR)
    policy = next(o for o in rendered if o["metadata"]["name"] == "allow-load-balancer")
    assert policy["spec"]["ingress"] == [
        {"from": [{"ipBlock": {"cidr": VPC_CIDR}}, {"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": SERVING_PORTS}]


def test_https_egress_anywhere_but_instance_metadata(objects):
    """AWS APIs (S3, STS for IRSA, ECR): egress TCP 443 to 0.0.0.0/0 except 169.254.169.254/32; no other port."""
    assert policy_spec(objects, "allow-https-egress") == {
        "podSelector": {},
        "policyTypes": ["Egress"],
        "egress": [{
            "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}}],
            "ports": [{"protocol": "TCP", "port": 443}],
        }],
    }


# --- data volumes -----------------------------------------------------------------------------


S3_SOURCES = ("datasets", "models", "logs")


def team_volume_objects(spec, team: str = "vision") -> dict[tuple[str, str], dict]:
    rendered = volume_objects(spec, team, team_labels(spec.name, team), bucket_names=BUCKET_NAMES, region=REGION)
    by_key = {(o["kind"], o["metadata"]["name"]): o for o in rendered}
    assert len(by_key) == len(rendered), "two objects share a kind and name"
    return by_key


@pytest.fixture(scope="module")
def volumes(spec) -> dict[tuple[str, str], dict]:
    return team_volume_objects(spec)


def test_volume_objects_are_a_pv_and_claim_per_bucket_source_and_the_shared_claim(volumes):
    """With EFS (the default): PersistentVolumes `<team>-datasets|models|logs` (cluster-scoped, so named by
    the team), claims of the same sources plus `shared` in the team namespace; nothing else."""
    assert sorted(volumes) == sorted([
        *(("PersistentVolume", f"vision-{source}") for source in S3_SOURCES),
        *(("PersistentVolumeClaim", source) for source in (*S3_SOURCES, "shared")),
    ])
    for (kind, _), obj in volumes.items():
        assert obj["metadata"]["labels"] == LABELS, kind
        if kind == "PersistentVolume":
            assert "namespace" not in obj["metadata"]
        else:
            assert obj["metadata"]["namespace"] == "team-vision"


@pytest.mark.parametrize("source", S3_SOURCES)
def test_s3_volume_is_the_team_prefix_read_only_with_the_pod_role(volumes, source):
    """Every field of the PersistentVolume: ReadOnlyMany, kept on release, no StorageClass, reserved for the
    team's claim, the Mountpoint driver with a unique handle, the bucket of that source, pod-level
    authentication (the team's IRSA role), and Mountpoint options: the team's own prefix, read-only, the
    region (nodes hide IMDS from pods), uid/gid 1000 and allow-other for the non-root pods. The capacity is
    required by the API and ignored by the driver."""
    assert volumes[("PersistentVolume", f"vision-{source}")]["spec"] == {
        "capacity": {"storage": "1Ti"},
        "accessModes": ["ReadOnlyMany"],
        "persistentVolumeReclaimPolicy": "Retain",
        "storageClassName": "",
        "claimRef": {"namespace": "team-vision", "name": source},
        "mountOptions": ["prefix vision/", "read-only", "region us-west-2", "uid=1000", "gid=1000", "allow-other"],
        "csi": {
            "driver": "s3.csi.aws.com",
            "volumeHandle": f"vision-{source}",
            "volumeAttributes": {"bucketName": f"ml-x-{source}-a1b2c3", "authenticationSource": "pod"},
        },
    }


@pytest.mark.parametrize("source", S3_SOURCES)
def test_s3_claim_is_pre_bound_to_its_volume_and_charges_the_quota_little(volumes, source):
    """The claim names its volume (volumeName), no StorageClass, ReadOnlyMany, and requests 1Gi (what the
    quota charges; binding only needs it within the volume's 1Ti)."""
    assert volumes[("PersistentVolumeClaim", source)]["spec"] == {
        "accessModes": ["ReadOnlyMany"],
        "storageClassName": "",
        "volumeName": f"vision-{source}",
        "resources": {"requests": {"storage": "1Gi"}},
    }


def test_s3_volumes_and_claims_are_bound_both_ways(volumes):
    """Pre-binding in both directions: each volume's claimRef is exactly one claim of the team namespace,
    and that claim's volumeName is that volume (no other claim in the cluster can take it)."""
    claims = {(o["metadata"]["namespace"], name): o
              for (kind, name), o in volumes.items() if kind == "PersistentVolumeClaim"}
    for (kind, name), pv in volumes.items():
        if kind == "PersistentVolume":
            ref = pv["spec"]["claimRef"]
            assert claims[(ref["namespace"], ref["name"])]["spec"]["volumeName"] == name


def test_shared_claim_is_read_write_many_on_the_efs_storage_class(volumes):
    """The shared claim: ReadWriteMany on cloudml-shared, dynamically provisioned (no volumeName), 100Gi."""
    assert volumes[("PersistentVolumeClaim", "shared")]["spec"] == {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "cloudml-shared",
        "resources": {"requests": {"storage": "100Gi"}},
    }


def test_each_team_mounts_only_its_own_prefix_and_names_are_unique(spec, volumes):
    """The nlp team's volumes use the `nlp/` prefix and its own namespace and never mention vision; volume
    names and handles are distinct across teams (both are cluster-wide)."""
    nlp = team_volume_objects(spec, "nlp")
    for (kind, _), obj in nlp.items():
        assert "vision" not in json.dumps(obj), kind
        if kind == "PersistentVolume":
            assert obj["spec"]["mountOptions"][0] == "prefix nlp/"
            assert obj["spec"]["claimRef"]["namespace"] == "team-nlp"
    pvs = [o for (kind, _), o in [*volumes.items(), *nlp.items()] if kind == "PersistentVolume"]
    assert len({pv["metadata"]["name"] for pv in pvs}) == len({pv["spec"]["csi"]["volumeHandle"] for pv in pvs}) == 6


def test_every_volume_object_is_schema_valid(volumes):
    """Each PersistentVolume and claim is valid Kubernetes 1.31 (strict)."""
    assert len(volumes) == 7
    for obj in volumes.values():
        assert schema_errors(obj) == []
        assert kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True) == "1.31"


def test_without_efs_there_is_no_shared_claim_nor_shared_volume_source():
    """sharedFilesystem none: only the three S3 volumes and their claims, and `volumes` offers no `shared`."""
    config = copy.deepcopy(CONFIG)
    config["storage"] = {"sharedFilesystem": "none"}
    platform = load_platform(config)
    assert team_volumes(platform) == {"datasets": "datasets", "models": "models", "logs": "logs"}
    assert sorted(team_volume_objects(platform)) == sorted([
        *(("PersistentVolume", f"vision-{source}") for source in S3_SOURCES),
        *(("PersistentVolumeClaim", source) for source in S3_SOURCES),
    ])


def test_default_storage_quota_holds_the_platform_claims_and_many_dev_homes(volumes):
    """A team with the default storage quota keeps room, after the platform's own claims, for at least 30
    dev-environment homes of the default size (every claim request counts against `requests.storage`)."""
    def gib(quantity: str) -> float:
        return float(quantity.removesuffix("Gi")) if quantity.endswith("Gi") else float(quantity.removesuffix("Ti")) * 1024

    platform = load_platform({"name": "ml-x", "admins": [PLATFORM_ADMIN], "teams": {"t": {"gpuQuota": 0}}})
    claimed = sum(gib(o["spec"]["resources"]["requests"]["storage"])
                  for (kind, _), o in volumes.items() if kind == "PersistentVolumeClaim")
    assert claimed == 103
    free = gib(platform.teams["t"].storage_quota) - claimed
    assert free >= 30 * gib(DevEnvironmentWorkload.model_fields["home_size"].default)
    assert volume_quota_problems(platform) == []


def test_a_storage_quota_below_the_platform_claims_is_refused(spec):
    """A quota the platform's own claims would exceed is a config problem naming the team's storageQuota
    (the API server would otherwise refuse the claims halfway through `pulumi up`), and Tenancy refuses to build."""
    config = copy.deepcopy(CONFIG)
    config["teams"]["nlp"]["storageQuota"] = "100Gi"
    with pytest.raises(ConfigError):
        load_platform(config)  # reported with the contract's rules (test_spec_platform.py)
    platform = PlatformSpec.model_validate(config)  # fields only: the component's own check
    [problem] = volume_quota_problems(platform)
    assert problem.path == "cloudml:platform.teams.nlp.storageQuota"
    assert problem.value == '"100Gi"'
    assert "103Gi" in problem.message
    config["storage"] = {"sharedFilesystem": "none"}  # the S3 claims alone fit
    assert volume_quota_problems(load_platform(config)) == []

    def build():
        Tenancy("t", platform, k8s.Provider("k8s", kubeconfig="{}"), [], cluster_name="ml-x",
                oidc_provider_arn=OIDC_PROVIDER, oidc_issuer_url=OIDC_ISSUER, bucket_arns=BUCKETS,
                bucket_names=BUCKET_NAMES, region=REGION, vpc_cidr=VPC_CIDR)

    with pytest.raises(ConfigError, match="storageQuota"):
        run_components(build)


# --- the S3 policy ----------------------------------------------------------------------------


def statements(policy: str) -> dict[str, dict]:
    return {s["Sid"]: s for s in json.loads(policy)["Statement"]}


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_s3_policy_reaches_only_the_team_prefix():
    """Every statement allows, no resource is `*`, every object resource is `<bucket>/<team>/*` of a
    platform bucket, listing is conditioned on the team's prefix, and the other team's name never appears."""
    policy = team_s3_policy("vision", BUCKETS)
    assert "nlp" not in policy
    for statement in json.loads(policy)["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in as_list(statement["Resource"]):
            assert "*" not in resource.removesuffix("/vision/*"), resource
            assert resource in BUCKETS.values() or resource.removesuffix("/vision/*") in BUCKETS.values(), resource
    listing = statements(policy)["ListTeamPrefix"]
    assert listing["Action"] == "s3:ListBucket"
    assert sorted(listing["Resource"]) == sorted(BUCKETS.values())
    assert listing["Condition"] == {"StringLike": {"s3:prefix": ["vision/", "vision/*"]}}


def test_s3_prefix_condition_does_not_admit_a_team_whose_name_extends_this_one():
    """StringLike with `vision/` and `vision/*` matches the team's own listings, not `vision2/` nor the
    bucket root (fnmatch has the same `*` semantics here: team names hold no wildcard characters)."""
    patterns = statements(team_s3_policy("vision", BUCKETS))["ListTeamPrefix"]["Condition"]["StringLike"]["s3:prefix"]

    def allowed(prefix: str) -> bool:
        return any(fnmatch.fnmatchcase(prefix, p) for p in patterns)

    assert allowed("vision/") and allowed("vision/resnet/ckpt-3")
    assert not allowed("vision2/") and not allowed("vision") and not allowed("") and not allowed("nlp/vision/")


def test_s3_actions_per_bucket_role():
    """checkpoints, logs, models: get, put, delete, abort multipart; datasets: get, put, abort (data-prep
    jobs write datasets, workloads never delete them)."""
    by_sid = statements(team_s3_policy("vision", BUCKETS))
    assert set(by_sid) == {"ListTeamPrefix", "ReadWriteDeleteTeamObjects", "ReadWriteTeamDatasets"}
    assert by_sid["ReadWriteDeleteTeamObjects"]["Action"] == [
        "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:GetObject", "s3:PutObject"]
    assert by_sid["ReadWriteDeleteTeamObjects"]["Resource"] == [
        f"{BUCKETS[r]}/vision/*" for r in ("checkpoints", "logs", "models")]
    assert by_sid["ReadWriteTeamDatasets"]["Action"] == ["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"]
    assert by_sid["ReadWriteTeamDatasets"]["Resource"] == [f"{BUCKETS['datasets']}/vision/*"]


def test_kms_key_is_usable_only_through_s3_in_its_region():
    """With the storage key: Decrypt and GenerateDataKey on that key alone, only via S3 in the key's region."""
    by_sid = statements(team_s3_policy("vision", BUCKETS, KMS_KEY))
    assert by_sid["UseStorageKeyThroughS3"] == {
        "Sid": "UseStorageKeyThroughS3",
        "Effect": "Allow",
        "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
        "Resource": KMS_KEY,
        "Condition": {"StringEquals": {"kms:ViaService": "s3.us-west-2.amazonaws.com"}},
    }


@pytest.mark.parametrize("key", ["*", "arn:aws:kms:us-west-2:111122223333:alias/storage", "arn:aws:s3:::bucket"])
def test_kms_statement_refuses_anything_but_a_key_arn(key):
    """A wildcard, an alias or another service's ARN as the storage key is a wiring bug: refuse it."""
    with pytest.raises(ValueError, match="not the ARN of a KMS key"):
        team_s3_policy("vision", BUCKETS, key)


@pytest.mark.parametrize("buckets, message", [
    ({**BUCKETS, "datasets": "arn:aws:s3:::*"}, "not the ARN of one S3 bucket"),
    ({**BUCKETS, "logs": "arn:aws:s3:::logs/other-team"}, "not the ARN of one S3 bucket"),
    ({k: v for k, v in BUCKETS.items() if k != "models"}, "must name exactly the buckets"),
], ids=["wildcard", "prefix", "missing-role"])
def test_s3_policy_refuses_bucket_arns_that_would_widen_or_miss_access(buckets, message):
    """A wildcard or a path in a bucket ARN, or a missing bucket role, is a wiring bug: refuse it."""
    with pytest.raises(ValueError, match=message):
        team_s3_policy("vision", buckets)


def test_admins_of_several_teams_get_one_entry_and_platform_admins_none(spec):
    """One access entry per principal: a principal administering two teams gets both namespaces (EKS allows
    one entry per principal and one association per policy); platform admins are skipped."""
    assert team_admin_namespaces(spec) == {
        SHARED_LEAD: ["team-nlp", "team-vision"],
        VISION_LEAD: ["team-vision"],
    }


# --- the component under mocks ----------------------------------------------------------------


@pytest.fixture(scope="module")
def built(spec):
    """Build Tenancy once (with recorded options of the objects whose options matter) and return
    (resources by name, recorded options, resolved outputs)."""
    options: dict[str, pulumi.ResourceOptions] = {}
    outputs: dict = {}

    def recording(cls):
        class Recording(cls):
            def __init__(self, resource_name, *args, opts=None, **kwargs):
                options[resource_name] = opts
                super().__init__(resource_name, *args, opts=opts, **kwargs)
        return Recording

    def build():
        provider = k8s.Provider("k8s", kubeconfig="{}")
        access = aws.iam.Role("access", assume_role_policy="{}")  # stands in for the cluster-admin association
        tenancy = Tenancy(
            "ml-x-tenancy", spec, provider, [access],
            cluster_name="ml-x", oidc_provider_arn=OIDC_PROVIDER, oidc_issuer_url=OIDC_ISSUER,
            bucket_arns=BUCKETS, bucket_names=BUCKET_NAMES, region=REGION, vpc_cidr=VPC_CIDR, kms_key_arn=KMS_KEY,
        )
        for team, values in tenancy.teams.items():
            pulumi.Output.from_input(values).apply(lambda v, team=team: outputs.__setitem__(team, v))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tenancy_module.aws.eks, "AccessPolicyAssociation", recording(aws.eks.AccessPolicyAssociation))
        patch.setattr(tenancy_module.k8s.core.v1, "ServiceAccount", recording(k8s.core.v1.ServiceAccount))
        resources = run_components(build)
    return resources, options, outputs


def test_component_children_are_exactly_these(built):
    """Per team a ConfigGroup, an IRSA role (role + inline policy), a ServiceAccount and a volumes
    ConfigGroup; per non-platform admin principal one access entry and one Edit association; nothing else."""
    resources, _, _ = built
    got = {n: r["type"] for n, r in resources.items() if n not in ("k8s", "access")}
    vision_lead, shared_lead = principal_key(VISION_LEAD), principal_key(SHARED_LEAD)
    expected = {"ml-x-tenancy": "cloudml:platform:Tenancy", "ml-x-tenancy-guards": "kubernetes:yaml/v2:ConfigGroup"}
    for team in ("vision", "nlp"):
        expected |= {
            f"ml-x-tenancy-{team}": "kubernetes:yaml/v2:ConfigGroup",
            f"ml-x-tenancy-{team}-irsa": "cloudml:platform:ServiceAccountRole",
            f"ml-x-tenancy-{team}-irsa-role": "aws:iam/role:Role",
            f"ml-x-tenancy-{team}-irsa-policy": "aws:iam/rolePolicy:RolePolicy",
            f"ml-x-tenancy-{team}-sa": "kubernetes:core/v1:ServiceAccount",
            f"ml-x-tenancy-{team}-volumes": "kubernetes:yaml/v2:ConfigGroup",
        }
    for key in (vision_lead, shared_lead):
        expected |= {
            f"ml-x-tenancy-admin-{key}": "aws:eks/accessEntry:AccessEntry",
            f"ml-x-tenancy-admin-{key}-edit": "aws:eks/accessPolicyAssociation:AccessPolicyAssociation",
        }
    assert got == expected
    tenancy_urn = resources["ml-x-tenancy"]["urn"]
    for name in expected:
        if name != "ml-x-tenancy" and "-irsa-" not in name:
            assert resources[name]["parent"] == tenancy_urn, name


def test_config_group_holds_the_rendered_objects_on_the_cluster_after_admin_access(spec, built):
    """The group's objs are exactly the rendered tenancy objects; it uses the cluster's provider and waits
    for the admins' access (there is no implicit creator-admin)."""
    resources, _, _ = built
    group = resources["ml-x-tenancy-vision"]
    assert group["inputs"]["objs"] == tenancy_objects(spec, "vision", spec.teams["vision"], vpc_cidr=VPC_CIDR)
    assert group["provider"].startswith(resources["k8s"]["urn"] + "::")
    assert resources["access"]["urn"] in group["dependsOn"]


def test_volumes_group_holds_the_team_volumes_after_its_namespace(spec, built):
    """Each team's volumes group holds exactly its rendered data volumes (with the real bucket names and
    region), uses the cluster's provider, and waits for the team's namespace group and the admins' access."""
    resources, _, _ = built
    for team in ("vision", "nlp"):
        group = resources[f"ml-x-tenancy-{team}-volumes"]
        assert group["inputs"]["objs"] == volume_objects(
            spec, team, team_labels("ml-x", team), bucket_names=BUCKET_NAMES, region=REGION)
        assert group["provider"].startswith(resources["k8s"]["urn"] + "::")
        assert {resources[f"ml-x-tenancy-{team}"]["urn"], resources["access"]["urn"]} <= set(group["dependsOn"])


def test_irsa_trust_is_pinned_to_the_team_workload_service_account(built):
    """Only `system:serviceaccount:team-<team>:<team>-workloads` (with the STS audience) can assume a team's role."""
    resources, _, _ = built
    for team in ("vision", "nlp"):
        trust = json.loads(resources[f"ml-x-tenancy-{team}-irsa-role"]["inputs"]["assumeRolePolicy"])
        assert trust == json.loads(trust_policy(OIDC_PROVIDER, OIDC_ISSUER, f"team-{team}", f"{team}-workloads"))


def test_irsa_inline_policy_is_the_team_s3_policy(built):
    """Each role's inline policy is that team's S3 policy (with the storage key) and names no other team."""
    resources, _, _ = built
    for team, other in (("vision", "nlp"), ("nlp", "vision")):
        policy = resources[f"ml-x-tenancy-{team}-irsa-policy"]["inputs"]["policy"]
        assert json.loads(policy) == json.loads(team_s3_policy(team, BUCKETS, KMS_KEY))
        assert f"/{other}/" not in policy and f"{other}/*" not in policy


def test_service_account_is_annotated_with_the_team_role_and_adopts_the_old_group_child(built):
    """The workload service account carries its role's ARN, goes to the cluster after its namespace's group,
    and aliases the object earlier versions made inside the group (no delete-and-recreate on upgrade)."""
    resources, options, _ = built
    record = resources["ml-x-tenancy-vision-sa"]
    metadata = record["inputs"]["metadata"]
    assert metadata["name"] == "vision-workloads" and metadata["namespace"] == "team-vision"
    assert metadata["labels"] == LABELS
    annotation = metadata["annotations"]["eks.amazonaws.com/role-arn"]
    assert annotation.startswith("arn:aws:iam::111122223333:role/ml-x-tenancy-vision-irsa-role"), annotation
    assert record["provider"].startswith(resources["k8s"]["urn"] + "::")
    assert resources["ml-x-tenancy-vision"]["urn"] in record["dependsOn"]
    [alias] = options["ml-x-tenancy-vision-sa"].aliases
    assert alias.name == "ml-x-tenancy-vision:team-vision/vision-workloads"
    assert alias.parent.__class__.__name__ == "ConfigGroup"


def test_admin_access_is_edit_scoped_to_the_team_namespaces(built):
    """Team admins get a STANDARD access entry and AmazonEKSEditPolicy scoped to their namespaces only
    (never `cluster`), after the entry exists, replaced delete-first (same association identity)."""
    resources, options, _ = built
    for principal, namespaces in ((VISION_LEAD, ["team-vision"]), (SHARED_LEAD, ["team-nlp", "team-vision"])):
        key = principal_key(principal)
        entry = resources[f"ml-x-tenancy-admin-{key}"]
        association = resources[f"ml-x-tenancy-admin-{key}-edit"]
        assert entry["inputs"] == {"clusterName": "ml-x", "principalArn": principal, "type": "STANDARD"}
        assert association["inputs"] == {
            "clusterName": "ml-x",
            "principalArn": principal,
            "policyArn": EDIT_POLICY,
            "accessScope": {"type": "namespace", "namespaces": namespaces},
        }
        assert entry["urn"] in association["dependsOn"]
        assert options[f"ml-x-tenancy-admin-{key}-edit"].delete_before_replace is True
    assert not any(PLATFORM_ADMIN == r["inputs"].get("principalArn") for r in resources.values())


def test_teams_output_names_namespace_service_account_quota_role_and_volumes(built):
    """The `teams` output gives team stacks their namespace, service account, GPU quota, IRSA role ARN,
    data volumes (source -> the claim in their namespace; the sample platform has EFS) and the quotas a
    team stack is checked against (storage: what the quota leaves after the platform's 103Gi of claims)."""
    resources, _, outputs = built
    assert set(outputs) == {"vision", "nlp"}
    volumes = {"shared": "shared", "datasets": "datasets", "models": "models", "logs": "logs"}
    quotas = {
        "vision": {"cpu": "48", "memory": "384Gi", "storageBytes": 2**40 - 103 * 2**30, "loadBalancers": 1},
        "nlp": {"cpu": "64", "memory": "512Gi", "storageBytes": 2 * 2**40 - 103 * 2**30, "loadBalancers": 2},  # defaults
    }
    for team, quota in (("vision", 12), ("nlp", 0)):
        values = dict(outputs[team])
        role_arn = values.pop("roleArn")
        assert values == {"namespace": f"team-{team}", "serviceAccount": f"{team}-workloads", "gpuQuota": quota,
                          "volumes": volumes, "quotas": quotas[team]}
        assert role_arn == resources[f"ml-x-tenancy-{team}-sa"]["inputs"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert role_arn.startswith(f"arn:aws:iam::111122223333:role/ml-x-tenancy-{team}-irsa-role")


def test_missing_bucket_role_is_refused_before_anything_is_created(spec):
    """Wiring Tenancy without one of the four bucket ARNs fails at construction, not with a half-made policy."""
    def build():
        Tenancy("t", spec, k8s.Provider("k8s", kubeconfig="{}"), [], cluster_name="ml-x", oidc_provider_arn=OIDC_PROVIDER,
                oidc_issuer_url=OIDC_ISSUER, bucket_arns={k: v for k, v in BUCKETS.items() if k != "logs"},
                bucket_names=BUCKET_NAMES, region=REGION, vpc_cidr=VPC_CIDR)

    with pytest.raises(Exception, match="must name exactly the buckets"):
        run_components(build)


def test_load_balancer_guard_denies_internet_facing_when_not_allowed():
    """Team admins can create Services, so the API server itself refuses internet-facing schemes in team
    namespaces (a ValidatingAdmissionPolicy bound to namespaces labelled cloudml.io/team)."""
    import kubernetes_validate

    from components.platform.tenancy import guard_objects
    from components.spec import load_platform

    policy, binding = guard_objects(load_platform({"name": "ml", "admins": ["arn:aws:iam::111122223333:role/a"]}))
    for obj in (policy, binding):
        kubernetes_validate.validate(obj, "1.31.0", strict=True)
    assert [v["expression"] for v in policy["spec"]["validations"]] == ["!variables.internetFacing"]
    scheme_check = policy["spec"]["variables"][1]["expression"]
    assert "service.beta.kubernetes.io/aws-load-balancer-scheme" in scheme_check and "alb.ingress.kubernetes.io/scheme" in scheme_check
    assert binding["spec"]["validationActions"] == ["Deny"]
    assert binding["spec"]["matchResources"]["namespaceSelector"] == {
        "matchExpressions": [{"key": "cloudml.io/team", "operator": "Exists"}]}


def test_load_balancer_guard_allows_only_the_platform_cidrs_when_internet_facing_is_allowed():
    """With the opt-in, an internet-facing Service must list source ranges, all among internetFacingCidrs."""
    from components.platform.tenancy import guard_objects
    from components.spec import load_platform

    policy, _ = guard_objects(load_platform({
        "name": "ml", "admins": ["arn:aws:iam::111122223333:role/a"],
        "loadBalancing": {"allowInternetFacing": True, "internetFacingCidrs": ["203.0.113.0/24"]}}))
    [validation] = policy["spec"]["validations"]
    assert validation["expression"].endswith('object.spec.loadBalancerSourceRanges.all(r, r in ["203.0.113.0/24"]))')
