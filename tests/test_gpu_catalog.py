"""The GPU catalog agrees with EC2's own instance type data (as moto ships it).

Every row of `components.gpu_catalog.GPU_INSTANCE_TYPES` is compared field by field with the
`describe_instance_types` answer of moto's EC2 mock: GPU count, GPU model, memory per GPU, vCPUs,
instance memory, x86_64 architecture, NVIDIA GPUs. Node pools tag their ASGs from this table for
scale-from-zero and team stacks check that pods fit a node with it, so a wrong row is a wrong
cluster.
"""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from components import gpu_catalog
from components.gpu_catalog import GPU_INSTANCE_TYPES

ROWS = sorted(GPU_INSTANCE_TYPES.values(), key=lambda r: r.name)
_PAGE = 100  # describe_instance_types takes at most 100 names per call


@pytest.fixture(scope="module")
def ec2_types() -> dict[str, dict]:
    """instance type name -> its describe_instance_types entry, for every catalog row."""
    with pytest.MonkeyPatch.context() as env:
        # Fake credentials: moto never talks to AWS, and no real credential may be picked up.
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_SESSION_TOKEN", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.delenv("AWS_PROFILE", raising=False)
        with mock_aws():
            client = boto3.client("ec2", region_name="us-east-1")
            names = [row.name for row in ROWS]
            found: dict[str, dict] = {}
            for start in range(0, len(names), _PAGE):
                answer = client.describe_instance_types(InstanceTypes=names[start:start + _PAGE])
                found.update({t["InstanceType"]: t for t in answer["InstanceTypes"]})
    return found


def test_catalog_is_not_empty_and_keyed_by_row_name():
    assert len(GPU_INSTANCE_TYPES) >= 10
    assert all(name == row.name for name, row in GPU_INSTANCE_TYPES.items())


def test_ec2_knows_every_catalog_instance_type(ec2_types):
    assert sorted(ec2_types) == sorted(GPU_INSTANCE_TYPES)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_catalog_row_matches_ec2(ec2_types, row):
    ec2 = ec2_types[row.name]
    gpus = ec2["GpuInfo"]["Gpus"]
    assert len(gpus) == 1, f"{row.name} has several GPU models: {gpus}"
    gpu = gpus[0]
    assert (
        row.gpus, row.gpu_type, row.gpu_memory_mib, row.vcpus, row.memory_mib,
    ) == (
        gpu["Count"], gpu["Name"].lower(), gpu["MemoryInfo"]["SizeInMiB"],
        ec2["VCpuInfo"]["DefaultVCpus"], ec2["MemoryInfo"]["SizeInMiB"],
    ), "catalog (gpus, gpu_type, gpu_memory_mib, vcpus, memory_mib) vs EC2"
    assert gpu["Manufacturer"] == "NVIDIA"
    assert ec2["ProcessorInfo"]["SupportedArchitectures"] == ["x86_64"]


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
def test_gpu_type_is_a_lower_case_label_value(row):
    # It becomes the `cloudml.io/gpu-type` node label value and the nodeSelector of GPU pods.
    assert row.gpu_type == row.gpu_type.lower() and row.gpu_type.isalnum()


def test_lookup_returns_the_row_or_none():
    assert gpu_catalog.lookup("g5.12xlarge") == GPU_INSTANCE_TYPES["g5.12xlarge"]
    assert gpu_catalog.lookup("g5.12xlarge").gpus == 4
    assert gpu_catalog.lookup("m6i.xlarge") is None
    assert gpu_catalog.lookup("G5.12XLARGE") is None
