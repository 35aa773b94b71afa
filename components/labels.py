"""Names that several parts of cloudml must agree on: node labels and taints the node pools set
and the workloads select, the labels every object carries, and the GPU resource name."""

PART_OF = "cloudml"
MANAGED_BY = "cloudml"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
POOL_LABEL = "cloudml.io/pool"
GPU_TYPE_LABEL = "cloudml.io/gpu-type"
TEAM_LABEL = "cloudml.io/team"
WORKLOAD_LABEL = "cloudml.io/workload"
