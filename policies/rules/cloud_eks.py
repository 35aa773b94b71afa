"""The EKS and node rules: the cluster's API endpoint, Secrets encryption and audit log; launch
templates (IMDSv2, no public IPs); GPU node groups (max size within the cap, scale to zero, spot in
dev stacks).

A node group is a GPU group when its labels carry `cloudml.io/gpu-type` or `nvidia.com/gpu.present`,
a taint has the key `nvidia.com/gpu`, or its amiType is an NVIDIA/GPU AMI (the labels and taint are
the ones components/labels.py defines for the platform's pools; the AMI catches other groups).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping

from components.labels import GPU_PRESENT_LABEL, GPU_TAINT_KEY, GPU_TYPE_LABEL
from policies.core import (
    ADVISORY, MANDATORY, Finding, PlannedResource, PolicyConfig, ResourceRule, StackRule, environment_stacks,
    whole_spaces_covered,
)
from policies.rules.cloud_common import is_true, is_unknown, items, mapping, quoted, strings, whole_number

CLUSTER = "aws:eks/cluster:Cluster"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


# --- eks-endpoint-restricted ----------------------------------------------------------------


ENDPOINT_FIX = ("Set vpcConfig.endpointPublicAccess: false (platform endpoint.publicAccessCidrs: []), or list only "
                "your office/VPN CIDRs in vpcConfig.publicAccessCidrs.")


def check_endpoint(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    vpc = resource.props.get("vpcConfig")
    if is_unknown(vpc):
        return
    vpc = mapping(vpc)
    public, cidrs = vpc.get("endpointPublicAccess"), vpc.get("publicAccessCidrs")
    if public is False or is_unknown(public) or is_unknown(cidrs):
        return
    if not items(cidrs):
        # AWS's defaults: a public endpoint (endpointPublicAccess true) open to 0.0.0.0/0.
        state = "is true" if public is True else "is not set (AWS's default: true)"
        yield Finding(f"vpcConfig.endpointPublicAccess {state} and vpcConfig.publicAccessCidrs is not set: "
                      "the Kubernetes API is open to 0.0.0.0/0 (AWS's default)", ENDPOINT_FIX)
        return
    whole = set()
    for i, cidr in enumerate(items(cidrs)):
        try:
            network = ipaddress.ip_network(str(cidr), strict=False)
        except ValueError:
            continue  # not a CIDR (unknown, or EKS rejects it): nothing to judge
        if network.prefixlen == 0:
            whole.add(str(network))
            yield Finding(f"vpcConfig.publicAccessCidrs[{i}] is {cidr}: the Kubernetes API is open to the whole internet",
                          ENDPOINT_FIX)
    # Split into pieces (0.0.0.0/1 + 128.0.0.0/1), the whole space is as open.
    for space, listed in whole_spaces_covered(items(cidrs)):
        if space not in whole:
            yield Finding(f"vpcConfig.publicAccessCidrs {', '.join(listed)} together cover {space}: the Kubernetes API "
                          "is open to the whole internet", ENDPOINT_FIX)


# --- eks-secrets-encrypted ------------------------------------------------------------------


SECRETS_FIX = 'Set encryptionConfig: {resources: ["secrets"], provider: {keyArn: <a KMS key ARN>}}.'


def check_secrets(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    raw = resource.props.get("encryptionConfig")
    if is_unknown(raw):
        return
    # v7 takes one object; older versions a list of them.
    configs = [mapping(c) for c in ([raw] if isinstance(raw, Mapping) else items(raw))]
    if not any(configs):
        yield Finding("encryptionConfig is not set: Kubernetes Secrets are not envelope-encrypted with a KMS key",
                      SECRETS_FIX)
        return
    path = "encryptionConfig" if isinstance(raw, Mapping) else "encryptionConfig[{}]"
    covering = [(i, c) for i, c in enumerate(configs)
                if is_unknown(c.get("resources")) or "secrets" in strings(c.get("resources"))]
    if not covering:
        yield Finding(f'{path.format(0)}.resources does not include "secrets"', SECRETS_FIX)
        return
    for i, c in covering:
        provider = c.get("provider")
        key = mapping(provider).get("keyArn")
        if not is_unknown(provider) and not is_unknown(key) and not (isinstance(key, str) and key):
            yield Finding(f"{path.format(i)}.provider.keyArn is not set: Secrets have no KMS key to be encrypted with",
                          SECRETS_FIX)


# --- eks-audit-logs -------------------------------------------------------------------------


def check_audit(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    logs = resource.props.get("enabledClusterLogTypes")
    if not is_unknown(logs) and "audit" not in strings(logs):
        yield Finding('enabledClusterLogTypes does not include "audit": the API server\'s audit log is not kept',
                      'Add "audit" to enabledClusterLogTypes (it goes to CloudWatch Logs /aws/eks/<cluster>/cluster).')


# --- launch-template-imdsv2 -----------------------------------------------------------------


def check_launch_template(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    options = resource.props.get("metadataOptions")
    tokens = mapping(options).get("httpTokens")
    if not is_unknown(options) and not is_unknown(tokens) and tokens != "required":
        state = ("is not set: instances accept IMDSv1 unless the AMI or the account's default requires IMDSv2"
                 if tokens is None else f"is {quoted(tokens)}: instances accept IMDSv1")
        # Required even with httpEndpoint "disabled": re-enabling the endpoint must not bring IMDSv1 back.
        yield Finding(f"metadataOptions.httpTokens {state}, whose credentials an SSRF can steal",
                      "Set metadataOptions.httpTokens: required (and httpPutResponseHopLimit: 1).")
    for i, interface in enumerate(items(resource.props.get("networkInterfaces"))):
        value = mapping(interface).get("associatePublicIpAddress")
        if is_true(value):
            yield Finding(
                f"networkInterfaces[{i}].associatePublicIpAddress is {quoted(value)}: nodes get public IP addresses",
                'Remove associatePublicIpAddress (or set it to "false"); nodes reach out through the NAT gateways.',
            )


# --- GPU node groups ------------------------------------------------------------------------


def is_gpu_node_group(resource: PlannedResource) -> bool:
    labels = mapping(resource.props.get("labels"))
    present = labels.get(GPU_PRESENT_LABEL, "false")
    if GPU_TYPE_LABEL in labels or (not is_unknown(present) and str(present).lower() != "false"):
        return True
    if any(mapping(t).get("key") == GPU_TAINT_KEY for t in items(resource.props.get("taints"))):
        return True
    ami = resource.props.get("amiType")
    return isinstance(ami, str) and ("NVIDIA" in ami or ami.endswith("_GPU"))


def _size(resource: PlannedResource, field: str) -> int | None:
    """A size as an int (also when a preview's Struct sends it as 4.0); None when unknown or unset."""
    return whole_number(mapping(resource.props.get("scalingConfig")).get(field))


def check_gpu_max_size(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    size = _size(resource, "maxSize")
    if is_gpu_node_group(resource) and size is not None and size > config.max_gpu_pool_nodes:
        yield Finding(f"scalingConfig.maxSize is {size}, above the cap of {config.max_gpu_pool_nodes} nodes per GPU pool",
                      f"Lower the pool's max (scalingConfig.maxSize) to at most {config.max_gpu_pool_nodes}, "
                      "or raise maxGpuPoolNodes in the pack config.")


def check_gpu_min_size(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    size = _size(resource, "minSize")
    if is_gpu_node_group(resource) and size is not None and size > 0:
        yield Finding(f"scalingConfig.minSize is {size}: the GPU pool keeps {size} node(s) running when idle",
                      "Set the pool's min (scalingConfig.minSize) to 0; "
                      "the Cluster Autoscaler adds nodes when GPU pods wait.")


def check_dev_spot(resources: list[PlannedResource], config: PolicyConfig) -> Iterator[tuple[PlannedResource, Finding]]:
    groups: dict[str, list[PlannedResource]] = {}
    for r in resources:
        if r.type == NODE_GROUP and is_gpu_node_group(r) and config.is_dev(*environment_stacks(resources, r.stack)):
            groups.setdefault(r.stack, []).append(r)
    for stack, gpu_groups in groups.items():
        capacity = [g.props.get("capacityType") for g in gpu_groups]
        if not any(c == "SPOT" or is_unknown(c) for c in capacity):
            # Reported once per stack, on its first GPU group: any one of them could be the spot pool.
            yield gpu_groups[0], Finding(
                f"no GPU node group of dev stack {stack} has capacityType SPOT: every dev GPU hour is billed on-demand",
                "Add a GPU pool with capacity: spot (capacityType SPOT) for interruptible dev and sweep work.",
            )


EKS_RULES = [
    ResourceRule(
        name="eks-endpoint-restricted",
        description="The EKS API endpoint is private, or public only to listed CIDRs that neither are nor together "
        "cover 0.0.0.0/0 (or ::/0).",
        level=MANDATORY, types=(CLUSTER,), check=check_endpoint,
        opt_out="none: mandatory (list the CIDRs that need the API in publicAccessCidrs). A stack whose contract opts "
        "into a world-open endpoint (endpoint.allowPublicInternet) must also set rules: {eks-endpoint-restricted: "
        "advisory} (or disabled) in its policy settings: that is the explicit, reviewed opt-out",
        config_keys=(),
    ),
    ResourceRule(
        name="eks-secrets-encrypted",
        description="The EKS cluster envelope-encrypts Kubernetes Secrets with a KMS key (encryptionConfig).",
        level=MANDATORY, types=(CLUSTER,), check=check_secrets, opt_out="none: mandatory",
        config_keys=(),
    ),
    ResourceRule(
        name="eks-audit-logs",
        description='The EKS cluster sends its "audit" control-plane log to CloudWatch Logs.',
        level=MANDATORY, types=(CLUSTER,), check=check_audit, opt_out="none: mandatory",
        config_keys=(),
    ),
    ResourceRule(
        name="launch-template-imdsv2",
        description="Launch templates require IMDSv2 (metadataOptions.httpTokens required) and give no network "
        "interface a public IP address.",
        level=MANDATORY, types=(LAUNCH_TEMPLATE,), check=check_launch_template, opt_out="none: mandatory",
        config_keys=(),
    ),
    ResourceRule(
        name="gpu-pool-max-size",
        description="A GPU node group's scalingConfig.maxSize is at most the pack's maxGpuPoolNodes.",
        level=MANDATORY, types=(NODE_GROUP,), check=check_gpu_max_size,
        opt_out="raise maxGpuPoolNodes in the pack config",
        config_keys=("maxGpuPoolNodes",),
    ),
    ResourceRule(
        name="gpu-pool-scales-to-zero",
        description="A GPU node group's scalingConfig.minSize is 0, so idle GPU nodes are removed.",
        level=ADVISORY, types=(NODE_GROUP,), check=check_gpu_min_size,
        opt_out="advisory: a pool that must stay warm keeps min > 0; the finding is a reminder of its cost",
        config_keys=(),
    ),
    StackRule(
        name="dev-stack-uses-spot",
        description="A dev stack (devStacks patterns, on its own name or a stack it reads by StackReference) has at "
        "least one GPU node group with capacityType SPOT.",
        level=ADVISORY, check=check_dev_spot,
        opt_out="advisory; set devStacks in the pack config to choose which stacks count as dev",
        config_keys=("devStacks",),
    ),
]
