"""Contract rules that keep `cloudml plan` and a real `pulumi up` in agreement: strict types (YAML
`true` is not 1), sizes AWS accepts, no key that would be silently ignored, pinned images, caps."""

from __future__ import annotations

import pytest
from test_spec_platform import platform, pool
from test_spec_platform import problem_lines as platform_problems
from test_spec_team import TRAINING, team
from test_spec_team import problem_lines as team_problems

SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
PIN_FIX = "Fix: name a version tag or a digest, e.g. trainer:1.4.0 or trainer@sha256:<digest>, so a re-run uses the same image"


@pytest.mark.parametrize(("raw", "expected"), [
    pytest.param(platform(network={"vpcCidr": "10.0.0.0/26"}),
                 'cloudml:platform.network.vpcCidr: is a /26; a new VPC must be /16 to /24 (got "10.0.0.0/26"). '
                 "Fix: use a prefix length from 16 to 24", id="vpc-too-small"),
    pytest.param(platform(network={"vpcCidr": "10.0.0.0/8"}),
                 'cloudml:platform.network.vpcCidr: is a /8; a new VPC must be /16 to /24 (got "10.0.0.0/8"). '
                 "Fix: use a prefix length from 16 to 24", id="vpc-too-large"),
    pytest.param(platform(network={"vpcCidr": 167772160}),
                 "cloudml:platform.network.vpcCidr: is not a CIDR block (got 167772160). "
                 'Fix: write it as a quoted string such as "10.40.0.0/16"', id="vpc-cidr-int"),
    pytest.param(platform(network={"vpcId": "vpc-0123456789abcdef0", "privateSubnetIds": SUBNETS, "availabilityZones": 3}),
                 "cloudml:platform.network: availabilityZones describe a new VPC, but vpcId uses an existing one. "
                 "Fix: remove availabilityZones, or remove vpcId", id="vpc-id-with-new-vpc-keys"),
    pytest.param(platform(admins=["arn:aws:iam::111122223333:role/a", "arn:aws:iam::111122223333:role/a"]),
                 'cloudml:platform.admins[1]: is already admins[0] (got "arn:aws:iam::111122223333:role/a"). '
                 "Fix: list each admin once", id="duplicate-admin"),
    pytest.param(platform(monitoring={"retentionDays": True}),
                 "cloudml:platform.monitoring.retentionDays: input should be a valid integer (got true). "
                 "Fix: use a whole number: prometheus retention in days.", id="bool-as-int"),
    pytest.param(platform(gpuPools=[pool(max=451)]),
                 "cloudml:platform.gpuPools[0].max: input should be less than or equal to 450 (got 451). "
                 "Fix: use 450 or less: maximum nodes; caps the pool's cost.", id="pool-over-eks-limit"),
    pytest.param(platform(protectStatefulResources="yes"),
                 'cloudml:platform.protectStatefulResources: input should be a valid boolean (got "yes"). '
                 "Fix: use true or false: protect buckets and file systems from `pulumi destroy`. "
                 "Turn off only for throwaway stacks.", id="string-as-bool"),
])
def test_platform_hardening_rule(raw, expected):
    """Each rule yields exactly this problem and no other."""
    assert platform_problems(raw) == [expected]


@pytest.mark.parametrize(("raw", "expected"), [
    pytest.param(team({**TRAINING, "gpuType": "a10g"}),
                 'cloudml:team.workloads[0].gpuType: (workload train) is set, but the workload asks for no GPUs (got "a10g"). '
                 "Fix: remove gpuType, or ask for GPUs (gpus, or gpusPerWorker for distributedTraining)", id="gpu-type-without-gpus"),
    pytest.param(team({**TRAINING, "image": "repo/trainer"}),
                 f'cloudml:team.workloads[0].image: is not pinned (no tag, or `latest`) (got "repo/trainer"). {PIN_FIX}',
                 id="image-without-tag"),
    pytest.param(team({**TRAINING, "image": "repo/trainer:latest"}),
                 f'cloudml:team.workloads[0].image: is not pinned (no tag, or `latest`) (got "repo/trainer:latest"). {PIN_FIX}',
                 id="image-latest"),
    pytest.param(team({**TRAINING, "activeDeadline": "100000000d"}),
                 'cloudml:team.workloads[0].activeDeadline: is longer than Kubernetes can hold (about 68 years) '
                 '(got "100000000d"). Fix: write a shorter duration', id="duration-over-int32"),
    pytest.param(team({**TRAINING, "backoffLimit": True}),
                 "cloudml:team.workloads[0].backoffLimit: input should be a valid integer (got true). "
                 "Fix: use a whole number: pod retries before the Job fails.", id="bool-as-backoff"),
])
def test_team_hardening_rule(raw, expected):
    """Each rule yields exactly this problem and no other."""
    assert team_problems(raw) == [expected]


@pytest.mark.parametrize("image", [
    "registry.example.com:5000/team/trainer:1.2.3",
    "trainer@sha256:" + "a" * 64,
    "111122223333.dkr.ecr.us-west-2.amazonaws.com/cloudml/trainer:0.1.0",
])
def test_pinned_images_are_accepted(image):
    """A registry port is not a tag, and a digest pins without a tag."""
    from components.spec import load_team

    assert load_team(team({**TRAINING, "image": image})).workloads[0].image == image
