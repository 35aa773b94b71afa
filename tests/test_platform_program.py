"""Layer 2: the Platform component's exact child contract, under Pulumi mocks (via the plan).

Each test names the security-relevant inputs it pins; a change to them must be deliberate.
"""

from __future__ import annotations

import copy

import pytest
from conftest import sample_config, write_stack

from cloudml.plan import Planner

P = "urn:pulumi:platform-dev::cloudml::"


def by_name(plan) -> dict[str, dict]:
    return {r["name"]: r for r in plan.resources}


def plan_platform(tmp_path, mutate) -> object:
    config = copy.deepcopy(sample_config("platform-dev"))
    mutate(config["cloudml:platform"])
    write_stack(tmp_path, "platform-dev", config)
    return Planner(tmp_path).plan("platform-dev")


COMPONENTS = ["network", "cluster", "nodes", "cluster-addons", "storage", "addons", "tenancy", "monitoring"]


def test_platform_is_made_of_these_components(sample_plans):
    """Platform's direct children are exactly its eight components (each tested in its own file)."""
    resources = sample_plans["platform-dev"].resources
    platform = next(r for r in resources if r["name"] == "ml-dev")
    direct = sorted(r["name"] for r in resources if r["parent"] == platform["urn"])
    assert direct == sorted(f"ml-dev-{c}" for c in COMPONENTS)


def test_resource_counts_by_type(sample_plans):
    """What the sample platform creates, counted by type: a change in any count is deliberate."""
    counts: dict[str, int] = {}
    for r in sample_plans["platform-dev"].resources:
        counts[r["type"]] = counts.get(r["type"], 0) + 1
    assert counts["aws:ec2/subnet:Subnet"] == 6          # public + private in 3 AZs
    assert counts["aws:ec2/natGateway:NatGateway"] == 3  # natGateways: perAz
    assert counts["aws:eks/nodeGroup:NodeGroup"] == 3    # system + 2 GPU pools
    assert counts["aws:ec2/launchTemplate:LaunchTemplate"] == 3
    assert counts["aws:autoscaling/tag:Tag"] == 12       # 6 scale-from-zero tags per GPU pool
    assert counts["aws:s3/bucket:Bucket"] == 4           # datasets, models, checkpoints, logs
    assert counts["aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"] == 4
    assert counts["aws:s3/bucketPolicy:BucketPolicy"] == 4
    assert counts["aws:eks/addon:Addon"] == 6            # vpc-cni, kube-proxy, coredns, ebs, efs, s3 csi
    # device plugin, CA, metrics-server, KEDA, JobSet, LBC, kube-prometheus-stack, dcgm-exporter
    assert counts["kubernetes:helm.sh/v3:Release"] == 8
    assert counts["cloudml:platform:ServiceAccountRole"] == 9  # ... and Alertmanager's (sns:Publish)
    assert counts["aws:efs/fileSystem:FileSystem"] == 1
    assert "aws:fsx/lustreFileSystem:LustreFileSystem" not in counts  # lustre.enabled: false


def test_every_child_is_named_after_and_parented_to_its_component(sample_plans):
    """DESIGN: child names are f"{name}-<role>" and every child has a parent; all chains end at Platform."""
    resources = sample_plans["platform-dev"].resources
    by_urn = {r["urn"]: r for r in resources}
    for record in resources:
        if record["name"] == "ml-dev":
            assert record["parent"].endswith("::cloudml-platform-dev"), "Platform sits directly under the stack"
            continue
        parent = by_urn[record["parent"]]
        assert record["name"].startswith(parent["name"] + "-"), f"{record['name']} under {parent['name']}"
        chain = record
        while chain["name"] != "ml-dev":
            chain = by_urn[chain["parent"]]


def test_component_type_tokens(sample_plans):
    """Components use cloudml:<module>:<Component> tokens."""
    components = {r["type"] for r in sample_plans["platform-dev"].resources if not r["custom"] and "ConfigGroup" not in r["type"]}
    assert components == {f"cloudml:platform:{c}" for c in (
        "Platform", "Network", "Cluster", "ClusterAddons", "NodePools", "Storage", "Addons", "Tenancy", "ServiceAccountRole",
        "Monitoring")}


def test_stateful_resources_are_protected_and_retained(sample_plans):
    """Buckets, file systems and the keys that encrypt them survive `pulumi destroy` by default."""
    stateful = [r for r in sample_plans["platform-dev"].resources if r["type"] in (
        "aws:s3/bucket:Bucket", "aws:efs/fileSystem:FileSystem")]
    assert len(stateful) == 5
    assert all(r["protect"] and r["retainOnDelete"] for r in stateful)


def test_cluster_is_private_encrypted_logged_and_has_no_creator_admin(sample_plans):
    """EKS: private endpoint only, Secrets encrypted with the rotating KMS key, api/audit/authenticator logs,
    API auth mode without the implicit creator-admin."""
    resources = by_name(sample_plans["platform-dev"])
    cluster = resources["ml-dev-cluster-eks"]["inputs"]
    key = resources["ml-dev-cluster-secrets-key"]["inputs"]
    assert key["enableKeyRotation"] is True
    assert cluster["name"] == "ml-dev" and cluster["version"] == "1.31"
    assert cluster["vpcConfig"]["endpointPrivateAccess"] is True
    assert cluster["vpcConfig"]["endpointPublicAccess"] is False
    assert "publicAccessCidrs" not in cluster["vpcConfig"]
    assert cluster["encryptionConfig"]["resources"] == ["secrets"]
    assert cluster["encryptionConfig"]["provider"]["keyArn"].startswith("arn:aws:kms:us-west-2:")
    assert cluster["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert cluster["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}
    assert len(cluster["vpcConfig"]["subnetIds"]) == 3


def test_only_listed_admins_get_cluster_admin(sample_plans):
    """Each platform admin gets a cluster-scoped cluster-admin association; team admins only namespace-scoped edit."""
    resources = by_name(sample_plans["platform-dev"])
    associations = {r["inputs"]["principalArn"]: r["inputs"] for r in resources.values()
                    if r["type"] == "aws:eks/accessPolicyAssociation:AccessPolicyAssociation"}
    assert associations["arn:aws:iam::111122223333:role/vision-leads"]["policyArn"] == (
        "arn:aws:eks::aws:cluster-access-policy/AmazonEKSEditPolicy")
    assert associations["arn:aws:iam::111122223333:role/vision-leads"]["accessScope"] == {
        "type": "namespace", "namespaces": ["team-vision"]}
    cluster_admins = [p for p, a in associations.items() if a["policyArn"].endswith("/AmazonEKSClusterAdminPolicy")]
    assert cluster_admins == ["arn:aws:iam::111122223333:role/platform-admins"]
    association = resources["ml-dev-cluster-admin-platform-admins-b53a6aa1-policy"]["inputs"]
    assert association["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    assert association["accessScope"] == {"type": "cluster"}


def test_public_endpoint_only_for_listed_cidrs(tmp_path):
    """Listing CIDRs opens the public endpoint to exactly those CIDRs, private access stays on."""
    plan = plan_platform(tmp_path, lambda c: c["endpoint"].update(publicAccessCidrs=["203.0.113.0/24"]))
    vpc_config = by_name(plan)["ml-dev-cluster-eks"]["inputs"]["vpcConfig"]
    assert vpc_config["endpointPublicAccess"] is True
    assert vpc_config["endpointPrivateAccess"] is True
    assert vpc_config["publicAccessCidrs"] == ["203.0.113.0/24"]


def test_new_vpc_subnets_are_private_and_tagged(sample_plans):
    """Subnets split the VPC CIDR, never map public IPs, and carry the EKS internal-ELB tags."""
    resources = by_name(sample_plans["platform-dev"])
    assert resources["ml-dev-network-vpc"]["inputs"]["cidrBlock"] == "10.40.0.0/16"
    for i, cidr in enumerate(["10.40.0.0/19", "10.40.32.0/19", "10.40.64.0/19"]):
        subnet = resources[f"ml-dev-network-private-{i}"]["inputs"]
        assert subnet["cidrBlock"] == cidr
        assert subnet["mapPublicIpOnLaunch"] is False
        assert subnet["availabilityZone"] == f"us-west-2{'abc'[i]}"
        assert subnet["tags"]["kubernetes.io/role/internal-elb"] == "1"
        assert subnet["tags"]["kubernetes.io/cluster/ml-dev"] == "shared"


def test_existing_vpc_creates_no_network(tmp_path):
    """With vpcId + privateSubnetIds the platform creates no VPC or subnet and puts the cluster in those subnets."""
    subnets = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    plan = plan_platform(tmp_path, lambda c: c.update(network={"vpcId": "vpc-0123456789abcdef0", "privateSubnetIds": subnets}))
    types = {r["type"] for r in plan.resources}
    assert "aws:ec2/vpc:Vpc" not in types and "aws:ec2/subnet:Subnet" not in types
    assert by_name(plan)["ml-dev-cluster-eks"]["inputs"]["vpcConfig"]["subnetIds"] == subnets


@pytest.mark.parametrize("pool, capacity, instance_types, labels", [
    ("a10g", "ON_DEMAND", ["g5.12xlarge"], {"cloudml.io/pool": "a10g", "cloudml.io/gpu-type": "a10g",
                                             "nvidia.com/gpu.present": "true", "k8s.amazonaws.com/accelerator": "nvidia-a10g"}),
    ("l4-spot", "SPOT", ["g6.xlarge", "g6.2xlarge", "g6.4xlarge"],
     {"cloudml.io/pool": "l4-spot", "cloudml.io/gpu-type": "l4", "nvidia.com/gpu.present": "true",
      "k8s.amazonaws.com/accelerator": "nvidia-l4"}),
])
def test_gpu_node_groups(sample_plans, pool, capacity, instance_types, labels):
    """GPU pools: NVIDIA AMI, capacity type, instance types, labels, the GPU taint, min 0; desired starts at min
    and then belongs to the Cluster Autoscaler (ignored by later updates)."""
    group = by_name(sample_plans["platform-dev"])[f"ml-dev-nodes-gpu-{pool}"]
    inputs = group["inputs"]
    assert inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    assert inputs["capacityType"] == capacity
    assert inputs["instanceTypes"] == instance_types
    assert inputs["labels"] == labels
    assert inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert inputs["scalingConfig"]["minSize"] == 0
    assert inputs["scalingConfig"]["desiredSize"] == inputs["scalingConfig"]["minSize"]
    assert group["ignoreChanges"] == ["scalingConfig.desiredSize"]
    assert any(d.endswith("::ml-dev-nodes-node-role-worker") for d in group["dependsOn"])
    assert "launchTemplate" in inputs and "diskSize" not in inputs


def test_system_pool_is_on_demand_cpu_without_taint(sample_plans):
    """The system pool runs add-ons: on-demand, standard AMI, no GPU taint."""
    inputs = by_name(sample_plans["platform-dev"])["ml-dev-nodes-system"]["inputs"]
    assert inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert inputs["capacityType"] == "ON_DEMAND"
    assert "taints" not in inputs
    assert inputs["scalingConfig"] == {"minSize": 2, "maxSize": 4, "desiredSize": 2}


def test_tenancy_uses_the_cluster_provider_after_admin_access(sample_plans):
    """Team tenancy objects go to the new cluster (its provider), not to whatever kubeconfig is ambient,
    and only after the admins' access policy exists (there is no implicit creator-admin)."""
    resources = by_name(sample_plans["platform-dev"])
    provider_urn = resources["ml-dev-cluster-k8s"]["urn"]
    for team in ("vision", "nlp"):
        group = resources[f"ml-dev-tenancy-{team}"]
        assert group["provider"].startswith(provider_urn + "::")
        assert resources["ml-dev-cluster-admin-platform-admins-b53a6aa1-policy"]["urn"] in group["dependsOn"]


def test_team_volumes_mount_the_platform_buckets_with_the_pod_role(sample_plans):
    """Each team's volumes group holds Mountpoint volumes of the platform's own datasets, models and logs
    buckets (the `buckets` output) in the stack's region, authenticated with the pod's role, and the
    `shared` claim; it comes after the team's namespace, and team namespaces after the EFS StorageClass."""
    plan = sample_plans["platform-dev"]
    resources = by_name(plan)
    for team in ("vision", "nlp"):
        group = resources[f"ml-dev-tenancy-{team}-volumes"]
        pvs = {o["metadata"]["name"]: o["spec"] for o in group["inputs"]["objs"] if o["kind"] == "PersistentVolume"}
        assert {name: pv["csi"]["volumeAttributes"] for name, pv in pvs.items()} == {
            f"{team}-{source}": {"bucketName": plan.outputs["buckets"][source], "authenticationSource": "pod"}
            for source in ("datasets", "models", "logs")}
        assert all(pv["mountOptions"][:3] == [f"prefix {team}/", "read-only", "region us-west-2"] for pv in pvs.values())
        claims = sorted(o["metadata"]["name"] for o in group["inputs"]["objs"] if o["kind"] == "PersistentVolumeClaim")
        assert claims == ["datasets", "logs", "models", "shared"]
        assert resources[f"ml-dev-tenancy-{team}"]["urn"] in group["dependsOn"]
        assert resources["ml-dev-storage-efs-storage-class"]["urn"] in resources[f"ml-dev-tenancy-{team}"]["dependsOn"]


def test_mountpoint_driver_role_has_no_policy(sample_plans):
    """The Mountpoint for S3 driver's own IRSA role carries no inline or managed policy: S3 access of team
    volumes comes from each pod's own role."""
    names = [r["name"] for r in sample_plans["platform-dev"].resources if r["name"].startswith("ml-dev-storage-s3-csi-irsa")]
    assert sorted(names) == ["ml-dev-storage-s3-csi-irsa", "ml-dev-storage-s3-csi-irsa-role"]


def test_outputs_for_team_stacks(sample_plans):
    """The platform exports what team stacks read; the kubeconfig is a secret (redacted in the plan)."""
    plan = sample_plans["platform-dev"]
    assert plan.outputs["kubeconfig"] == "[secret]"
    assert plan.secret_outputs == ["kubeconfig"]
    assert plan.outputs["clusterName"] == "ml-dev"
    teams = {t: {k: v for k, v in o.items() if k != "roleArn"} for t, o in plan.outputs["teams"].items()}
    volumes = {"shared": "shared", "datasets": "datasets", "models": "models", "logs": "logs"}
    storage = 2 * 2**40 - 103 * 2**30  # the default 2Ti quota less the platform's own claims
    assert teams == {
        "vision": {"namespace": "team-vision", "serviceAccount": "vision-workloads", "gpuQuota": 16, "volumes": volumes,
                   "quotas": {"cpu": "64", "memory": "512Gi", "storageBytes": storage, "loadBalancers": 2}},
        "nlp": {"namespace": "team-nlp", "serviceAccount": "nlp-workloads", "gpuQuota": 8, "volumes": volumes,
                "quotas": {"cpu": "32", "memory": "256Gi", "storageBytes": storage, "loadBalancers": 2}},
    }
    assert all(o["roleArn"].startswith("arn:aws:iam::111122223333:role/") for o in plan.outputs["teams"].values())
    assert sorted(plan.outputs["buckets"]) == ["checkpoints", "datasets", "logs", "models"]
    assert plan.outputs["clusterEndpoint"].startswith("https://")
    assert plan.outputs["clusterCertificateAuthority"]
    assert plan.outputs["oidcIssuerUrl"].startswith("https://oidc.eks.us-west-2.amazonaws.com/id/")
    assert plan.outputs["oidcProviderArn"] == (
        "arn:aws:iam::111122223333:oidc-provider/" + plan.outputs["oidcIssuerUrl"].removeprefix("https://"))
    assert plan.outputs["sharedStorageClass"] == "cloudml-shared"
    assert plan.outputs["loadBalancing"] == {"allowInternetFacing": False, "internetFacingCidrs": []}  # no certificate: key absent
    assert plan.outputs["gpuPools"] == {
        "a10g": {"gpuType": "a10g", "gpusPerNode": 4, "maxNodes": 4, "capacity": "on-demand"},
        "l4-spot": {"gpuType": "l4", "gpusPerNode": 1, "maxNodes": 8, "capacity": "spot"},
    }


def test_kubeconfig_authenticates_with_aws_eks_get_token(sample_plans):
    """The kubeconfig holds no credentials: it execs `aws eks get-token` for the cluster and region."""
    import json

    config = json.loads(sample_plans["platform-dev"].plain_outputs["kubeconfig"])
    user = config["users"][0]["user"]["exec"]
    assert user["command"] == "aws"
    assert user["args"] == ["eks", "get-token", "--cluster-name", "ml-dev", "--region", "us-west-2", "--output", "json"]
    assert config["clusters"][0]["cluster"]["server"].startswith("https://")


def test_every_contract_section_is_deployed_so_the_sample_plans_without_warnings(sample_plans):
    """Monitoring was the last section validated but not deployed: nothing is left to warn about."""
    assert sample_plans["platform-dev"].warnings == []


def test_admin_entries_are_named_by_principal_not_position(tmp_path):
    """Removing the first admin leaves the second one's resources untouched (same names, no replacement)."""
    first, second = "arn:aws:iam::111122223333:role/a", "arn:aws:iam::111122223333:role/b"
    both = plan_platform(tmp_path / "both", lambda c: c.update(admins=[first, second]))
    only_second = plan_platform(tmp_path / "one", lambda c: c.update(admins=[second]))
    entries = lambda plan: {r["name"]: r["inputs"]["principalArn"] for r in plan.resources if r["type"] == "aws:eks/accessEntry:AccessEntry"}
    assert set(entries(only_second).items()) < set(entries(both).items())
