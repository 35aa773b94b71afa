"""The GPU instance types cloudml can put in a GPU pool, and what each one carries.

The table is the single source for GPU count, GPU model and node size per instance type: the spec
checks pools against it, the platform offers its GPU counts to team stacks (which check that a pod
fits on a node), and the Cluster Autoscaler's scale-from-zero ASG tags will be written from it. tests/test_gpu_catalog.py checks every row against the EC2
instance type data that moto ships (the `describe_instance_types` answer).

Only x86_64 NVIDIA types are listed: the EKS AL2023 NVIDIA AMI and the TensorFlow GPU images
cloudml uses are x86_64 builds.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInstanceType:
    """What one EC2 instance type offers to GPU workloads."""

    name: str
    gpu_type: str  # lower-case GPU model; the `cloudml.io/gpu-type` node label value
    gpus: int
    gpu_memory_mib: int  # per GPU
    vcpus: int
    memory_mib: int


def _row(name: str, gpu_type: str, gpus: int, gpu_memory_mib: int, vcpus: int, memory_gib: int) -> GpuInstanceType:
    return GpuInstanceType(name, gpu_type, gpus, gpu_memory_mib, vcpus, memory_gib * 1024)


_T4, _A10G, _L4, _L40S, _A100, _H100 = 16384, 22888, 22888, 45776, 40960, 81920

GPU_INSTANCE_TYPES: dict[str, GpuInstanceType] = {
    row.name: row
    for row in [
        _row("g4dn.xlarge", "t4", 1, _T4, 4, 16),
        _row("g4dn.2xlarge", "t4", 1, _T4, 8, 32),
        _row("g4dn.4xlarge", "t4", 1, _T4, 16, 64),
        _row("g4dn.8xlarge", "t4", 1, _T4, 32, 128),
        _row("g4dn.16xlarge", "t4", 1, _T4, 64, 256),
        _row("g4dn.12xlarge", "t4", 4, _T4, 48, 192),
        _row("g4dn.metal", "t4", 8, _T4, 96, 384),
        _row("g5.xlarge", "a10g", 1, _A10G, 4, 16),
        _row("g5.2xlarge", "a10g", 1, _A10G, 8, 32),
        _row("g5.4xlarge", "a10g", 1, _A10G, 16, 64),
        _row("g5.8xlarge", "a10g", 1, _A10G, 32, 128),
        _row("g5.16xlarge", "a10g", 1, _A10G, 64, 256),
        _row("g5.12xlarge", "a10g", 4, _A10G, 48, 192),
        _row("g5.24xlarge", "a10g", 4, _A10G, 96, 384),
        _row("g5.48xlarge", "a10g", 8, _A10G, 192, 768),
        _row("g6.xlarge", "l4", 1, _L4, 4, 16),
        _row("g6.2xlarge", "l4", 1, _L4, 8, 32),
        _row("g6.4xlarge", "l4", 1, _L4, 16, 64),
        _row("g6.8xlarge", "l4", 1, _L4, 32, 128),
        _row("g6.16xlarge", "l4", 1, _L4, 64, 256),
        _row("g6.12xlarge", "l4", 4, _L4, 48, 192),
        _row("g6.24xlarge", "l4", 4, _L4, 96, 384),
        _row("g6.48xlarge", "l4", 8, _L4, 192, 768),
        _row("g6e.xlarge", "l40s", 1, _L40S, 4, 32),
        _row("g6e.2xlarge", "l40s", 1, _L40S, 8, 64),
        _row("g6e.4xlarge", "l40s", 1, _L40S, 16, 128),
        _row("g6e.8xlarge", "l40s", 1, _L40S, 32, 256),
        _row("g6e.16xlarge", "l40s", 1, _L40S, 64, 512),
        _row("g6e.12xlarge", "l40s", 4, _L40S, 48, 384),
        _row("g6e.24xlarge", "l40s", 4, _L40S, 96, 768),
        _row("g6e.48xlarge", "l40s", 8, _L40S, 192, 1536),
        _row("p4d.24xlarge", "a100", 8, _A100, 96, 1152),
        _row("p5.4xlarge", "h100", 1, _H100, 16, 256),
        _row("p5.48xlarge", "h100", 8, _H100, 192, 2048),
    ]
}


def lookup(instance_type: str) -> GpuInstanceType | None:
    return GPU_INSTANCE_TYPES.get(instance_type)
