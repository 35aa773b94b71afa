"""NodePools under Pulumi mocks: launch templates (IMDSv2, hop limit 1, encrypted gp3 root), node groups
on those templates, least-privilege node role, GPU labels/taints, and the Cluster Autoscaler's
scale-from-zero tags on each GPU group's ASG."""

from __future__ import annotations

import copy

import pulumi
import pulumi_aws as aws
import pytest
from conftest import run_components, sample_config

from cloudml.mocks import CloudMocks
from components.platform.node_pools import NodePools, autoscaler_node_template_tags, gpu_pool_labels
from components.spec import load_platform

CA = "k8s.io/cluster-autoscaler"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
LATEST_VERSION = 7  # what the stand-in provider reports as the template's latest version


def platform(mutate=None):
    raw = copy.deepcopy(sample_config("platform-dev")["cloudml:platform"])
    if mutate:
        mutate(raw)
    return load_platform(raw)


@pytest.fixture
def provider_ids(monkeypatch) -> dict[str, str]:
    """The mocks with what EC2 answers for a launch template (`latestVersion`); records the id of each
    template and the ASG name EKS reports for each node group (the tags must land on exactly that ASG)."""
    names: dict[str, str] = {}
    original = CloudMocks._aws

    def aws_state(self, typ, name, state):
        rid, state = original(self, typ, name, state)
        if typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = LATEST_VERSION
            names[name] = rid
        if typ == "aws:eks/nodeGroup:NodeGroup":
            names[name] = state["resources"][0]["autoscalingGroups"][0]["name"]
        return rid, state

    monkeypatch.setattr(CloudMocks, "_aws", aws_state)
    return names


def build(spec, **kwargs):
    made = {}

    def program():
        made["nodes"] = NodePools("nodes", spec, "ml-dev", SUBNETS, **kwargs)

    resources = run_components(program)
    return resources, made["nodes"]


def ca_tags(resources, pool):
    tags = [r for r in resources.values() if r["type"] == "aws:autoscaling/tag:Tag" and r["name"].startswith(f"nodes-gpu-{pool}-ca-")]
    return {t["inputs"]["tag"]["key"]: t for t in tags}


def test_children_are_exactly_these(provider_ids):
    """The sample pools make one role with two attachments, a launch template and node group per pool,
    and six autoscaler tags per GPU pool; nothing else (no CNI attachment, no discovery tags)."""
    resources, _ = build(platform())
    tags = ["resources-nvidia-com-gpu", "label-cloudml-io-pool", "label-cloudml-io-gpu-type", "label-nvidia-com-gpu-present",
            "label-k8s-amazonaws-com-accelerator", "taint-nvidia-com-gpu"]
    assert {n: r["type"] for n, r in resources.items()} == {
        "nodes": "cloudml:platform:NodePools",
        "nodes-node-role": "aws:iam/role:Role",
        "nodes-node-role-worker": "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "nodes-node-role-ecr": "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "nodes-system-lt": "aws:ec2/launchTemplate:LaunchTemplate",
        "nodes-system": "aws:eks/nodeGroup:NodeGroup",
        **{f"nodes-gpu-{p}-lt": "aws:ec2/launchTemplate:LaunchTemplate" for p in ("a10g", "l4-spot")},
        **{f"nodes-gpu-{p}": "aws:eks/nodeGroup:NodeGroup" for p in ("a10g", "l4-spot")},
        **{f"nodes-gpu-{p}-ca-{t}": "aws:autoscaling/tag:Tag" for p in ("a10g", "l4-spot") for t in tags},
    }
    assert all(r["parent"].endswith("::nodes") for n, r in resources.items() if n != "nodes")


def test_node_role_is_least_privilege(provider_ids):
    """The node role trusts EC2 and gets only the worker and ECR read-only policies: no CNI policy (the
    vpc-cni add-on has its own IRSA role) and no SSM shell access."""
    resources, nodes = build(platform())
    policies = {r["inputs"]["policyArn"] for r in resources.values() if r["type"].endswith("RolePolicyAttachment")}
    assert policies == {"arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy", "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"}
    assert '"ec2.amazonaws.com"' in resources["nodes-node-role"]["inputs"]["assumeRolePolicy"]
    assert isinstance(nodes.node_role, aws.iam.Role)


@pytest.mark.parametrize("pool, disk", [("system", 50), ("gpu-a10g", 200), ("gpu-l4-spot", 200)])
def test_launch_template_locks_metadata_and_encrypts_root(provider_ids, pool, disk):
    """Every pool's template: IMDSv2 required with hop limit 1 (pods cannot reach node credentials),
    an encrypted gp3 root volume of the pool's size on /dev/xvda deleted with the instance, no network
    interface (no public IP; subnets stay on the group), none of the settings EKS forbids in it, tags
    on instances and volumes, and each change made the default version."""
    resources, _ = build(platform())
    inputs = resources[f"nodes-{pool}-lt"]["inputs"]
    assert inputs["metadataOptions"] == {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1}
    assert inputs["blockDeviceMappings"] == [{
        "deviceName": "/dev/xvda",
        "ebs": {"volumeSize": disk, "volumeType": "gp3", "encrypted": "true", "deleteOnTermination": "true"},
    }]
    forbidden = {"networkInterfaces", "iamInstanceProfile", "instanceInitiatedShutdownBehavior", "hibernationOptions",
                 "instanceMarketOptions", "imageId", "instanceType", "userData", "keyName", "vpcSecurityGroupIds"}
    assert forbidden.isdisjoint(inputs)
    name = pool.removeprefix("gpu-")
    tags = {"Name": f"ml-dev-{name}", "cloudml.io/cluster": "ml-dev", "cloudml.io/pool": name}
    assert inputs["tagSpecifications"] == [{"resourceType": "instance", "tags": tags}, {"resourceType": "volume", "tags": tags}]
    assert inputs["updateDefaultVersion"] is True


@pytest.mark.parametrize("pool", ["system", "gpu-a10g", "gpu-l4-spot"])
def test_node_group_uses_its_launch_template_without_disk_size(provider_ids, pool):
    """The group runs on its own template at the template's latest version, sets no diskSize or
    remoteAccess (EKS rejects them with a launch template), keeps the instance types, and waits for the
    node role's policies."""
    resources, _ = build(platform())
    group = resources[f"nodes-{pool}"]
    assert group["inputs"]["launchTemplate"] == {"id": provider_ids[f"nodes-{pool}-lt"], "version": str(LATEST_VERSION)}
    assert any(d.endswith(f"::nodes-{pool}-lt") for d in group["dependsOn"])
    assert "diskSize" not in group["inputs"] and "remoteAccess" not in group["inputs"]
    assert group["inputs"]["instanceTypes"]
    assert group["inputs"]["subnetIds"] == SUBNETS
    assert any(d.endswith("::nodes-node-role-worker") for d in group["dependsOn"])


@pytest.mark.parametrize("pool, capacity, labels, gpus", [
    ("a10g", "ON_DEMAND", {"cloudml.io/pool": "a10g", "cloudml.io/gpu-type": "a10g", "nvidia.com/gpu.present": "true",
                           "k8s.amazonaws.com/accelerator": "nvidia-a10g"}, "4"),
    ("l4-spot", "SPOT", {"cloudml.io/pool": "l4-spot", "cloudml.io/gpu-type": "l4", "nvidia.com/gpu.present": "true",
                         "k8s.amazonaws.com/accelerator": "nvidia-l4"}, "1"),
])
def test_gpu_groups_labels_taint_and_autoscaler_tags(provider_ids, pool, capacity, labels, gpus):
    """A GPU group: NVIDIA AMI, capacity type, its labels, the GPU taint; and on its own ASG exactly the
    node-template tags the Cluster Autoscaler needs to scale it from zero (GPUs per node from the
    catalog, e.g. g5.12xlarge -> 4), not propagated to instances, and no discovery tags (EKS adds those)."""
    resources, _ = build(platform())
    inputs = resources[f"nodes-gpu-{pool}"]["inputs"]
    assert inputs["amiType"] == "AL2023_x86_64_NVIDIA"
    assert inputs["capacityType"] == capacity
    assert inputs["labels"] == labels
    assert inputs["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    tags = ca_tags(resources, pool)
    assert {k: t["inputs"]["tag"]["value"] for k, t in tags.items()} == {
        f"{CA}/node-template/resources/nvidia.com/gpu": gpus,
        **{f"{CA}/node-template/label/{k}": v for k, v in labels.items()},
        f"{CA}/node-template/taint/nvidia.com/gpu": "true:NoSchedule",
    }
    for tag in tags.values():
        assert tag["inputs"]["autoscalingGroupName"] == provider_ids[f"nodes-gpu-{pool}"]
        assert tag["inputs"]["tag"]["propagateAtLaunch"] is False


def test_system_group_is_on_demand_cpu_without_taint_or_template_tags(provider_ids):
    """The system pool runs add-ons: standard AMI, on demand, no taint, min 2 (it never scales from zero,
    so it needs no node-template tags)."""
    resources, _ = build(platform())
    inputs = resources["nodes-system"]["inputs"]
    assert inputs["amiType"] == "AL2023_x86_64_STANDARD"
    assert inputs["capacityType"] == "ON_DEMAND"
    assert inputs["labels"] == {"cloudml.io/pool": "system"}
    assert "taints" not in inputs
    assert not [n for n in resources if n.startswith("nodes-system-ca-")]


def test_desired_size_starts_at_min_then_belongs_to_the_autoscaler(provider_ids):
    """Every group is created with desired = min and then ignores desiredSize, so `pulumi up` never
    shrinks a group the Cluster Autoscaler grew (EKS ignores PDBs when desired drops)."""
    spec = platform(lambda c: c["gpuPools"][1].update(min=2))
    resources, _ = build(spec)
    for pool, (low, high) in {"system": (2, 4), "gpu-a10g": (0, 4), "gpu-l4-spot": (2, 8)}.items():
        group = resources[f"nodes-{pool}"]
        assert group["inputs"]["scalingConfig"] == {"minSize": low, "maxSize": high, "desiredSize": low}
        assert group["ignoreChanges"] == ["scalingConfig.desiredSize"]


def test_time_slicing_adds_device_plugin_label_and_sliced_gpu_count(provider_ids):
    """With timeSlicingReplicas 4 the pool's nodes select the device-plugin config named after the pool,
    and the autoscaler is told the node offers GPUs x replicas (what the device plugin advertises),
    so a pod asking for more shares than physical GPUs still scales the pool up from zero."""
    spec = platform(lambda c: c["gpuPools"][1].update(timeSlicingReplicas=4))
    resources, _ = build(spec)
    assert resources["nodes-gpu-l4-spot"]["inputs"]["labels"]["nvidia.com/device-plugin.config"] == "l4-spot"
    assert "nvidia.com/device-plugin.config" not in resources["nodes-gpu-a10g"]["inputs"]["labels"]
    values = {k: t["inputs"]["tag"]["value"] for k, t in ca_tags(resources, "l4-spot").items()}
    assert values[f"{CA}/node-template/resources/nvidia.com/gpu"] == "4"
    assert values[f"{CA}/node-template/label/nvidia.com/device-plugin.config"] == "l4-spot"


@pytest.mark.parametrize("replicas, expected", [(1, False), (2, True)])
def test_device_plugin_label_only_when_time_sliced(replicas, expected):
    """The device-plugin config label appears only when the pool shares GPUs (replicas > 1)."""
    pool = platform(lambda c: c["gpuPools"][0].update(timeSlicingReplicas=replicas)).gpu_pools[0]
    assert ("nvidia.com/device-plugin.config" in gpu_pool_labels(pool)) is expected


def test_autoscaler_tags_fit_asg_limits():
    """ASG tag keys are at most 128 characters and values 256, even for the longest pool name and label."""
    pool = platform(lambda c: c["gpuPools"][0].update(name="a" * 20, timeSlicingReplicas=2)).gpu_pools[0]
    tags = autoscaler_node_template_tags(pool)
    assert all(len(k) <= 128 and len(v) <= 256 for k, v in tags.items())
    assert not any(k in tags for k in (f"{CA}/enabled", f"{CA}/ml-dev"))


def test_node_groups_wait_for_node_dependencies_and_outputs(provider_ids):
    """Node groups depend on `node_dependencies` (the vpc-cni add-on with its IRSA role, since the node
    role has no CNI policy); the component exposes every group for others to depend on."""
    made = {}

    def program():
        addon = aws.iam.Role("vpc-cni", assume_role_policy="{}")
        made["nodes"] = NodePools("nodes", platform(), "ml-dev", SUBNETS, node_dependencies=[addon])

    resources = run_components(program)
    addon_urn = resources["vpc-cni"]["urn"]
    for name in ("nodes-system", "nodes-gpu-a10g", "nodes-gpu-l4-spot"):
        assert addon_urn in resources[name]["dependsOn"], name
    nodes = made["nodes"]
    assert nodes.all_node_groups == [nodes.system, nodes.gpu_node_groups["a10g"], nodes.gpu_node_groups["l4-spot"]]
    assert set(nodes.launch_templates) == {"system", "a10g", "l4-spot"}
    assert isinstance(nodes.node_role_arn, pulumi.Output)
