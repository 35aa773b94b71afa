"""Names that several parts of cloudml must agree on: node labels and taints the node pools set
and the workloads select, the labels every object carries, and the GPU resource name."""

PART_OF = "cloudml"
MANAGED_BY = "cloudml"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"  # the GPU pools' taint: nvidia.com/gpu=true:NoSchedule
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
POOL_LABEL = "cloudml.io/pool"
GPU_TYPE_LABEL = "cloudml.io/gpu-type"
TEAM_LABEL = "cloudml.io/team"
WORKLOAD_LABEL = "cloudml.io/workload"
# A dev environment pod's idle timeout in seconds (its idle alert compares with it).
IDLE_TIMEOUT_LABEL = "cloudml.io/idle-timeout"
# The NVIDIA device plugin picks its per-node config (time-slicing) by this node label.
DEVICE_PLUGIN_CONFIG_LABEL = "nvidia.com/device-plugin.config"
# Namespace of the platform's add-ons that need privileges (device plugin): Pod Security privileged.
SYSTEM_NAMESPACE = "cloudml-system"
