"""The pack as the Pulumi engine drives it: `AnalyzeRequest` / `AnalyzeStackRequest` protobufs with
`google.protobuf.Struct` properties, sent to `pulumi_policy`'s own analyzer servicer (what
`pulumi preview --policy-pack policies` runs). A Struct has no integers (every number arrives as a
float: 4 -> 4.0) and a value unknown during preview arrives as the protocol's sentinel string; the
exact findings are pinned for both. `PolicyPack` is never constructed (it blocks forever): the
servicer it would serve is built from `policies.pack.policies()` directly.
"""

from __future__ import annotations

import copy

import pytest
from google.protobuf import struct_pb2
from pulumi.runtime.proto import analyzer_pb2 as proto
from pulumi_policy.policy import EnforcementLevel, _PolicyAnalyzerServicer
from pulumi_policy.proxy import UNKNOWN_ARRAY_VALUE, UNKNOWN_BOOLEAN_VALUE, UNKNOWN_NUMBER_VALUE, UNKNOWN_STRING_VALUE

from policies import pack
from test_policy_workloads import gpu_job, pod

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
JOB = "kubernetes:batch/v1:Job"
SERVICE = "kubernetes:core/v1:Service"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
GPU_POOL = {"labels": {"cloudml.io/gpu-type": "a10g"}, "scalingConfig": {"maxSize": 4, "minSize": 0}}
SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"


def struct(props: dict) -> struct_pb2.Struct:
    value = struct_pb2.Struct()
    value.update(props)
    return value


def servicer(config: dict | None = None) -> _PolicyAnalyzerServicer:
    """The analyzer the pack serves, configured as `--policy-pack-config` would (per policy, a Struct)."""
    analyzer = _PolicyAnalyzerServicer("cloudml", "0.1.0", pack.policies(), EnforcementLevel.MANDATORY)
    request = proto.ConfigureAnalyzerRequest()
    for policy, properties in (config or {}).items():
        request.policyConfig[policy].properties.update(properties)
    analyzer.Configure(request, None)
    return analyzer


def urn(type_: str, name: str, stack: str = "team-vision") -> str:
    return f"urn:pulumi:{stack}::cloudml::{type_}::{name}"


def analyze(type_: str, props: dict, name: str = "r", analyzer=None, **config) -> list[tuple[str, str]]:
    """(policy, message) of every diagnostic of one resource."""
    request = proto.AnalyzeRequest(type=type_, name=name, urn=urn(type_, name), properties=struct(props))
    response = (analyzer or servicer(config)).Analyze(request, None)
    return [(d.policyName, d.message.split("\n", 1)[1]) for d in response.diagnostics]


def analyze_stack(*resources: tuple[str, str, dict], stack: str = "team-vision", **config) -> list[tuple[str, str]]:
    request = proto.AnalyzeStackRequest(resources=[
        proto.AnalyzerResource(type=t, name=n, urn=urn(t, n, stack), properties=struct(p)) for t, n, p in resources])
    response = servicer(config).AnalyzeStack(request, None)
    return [(d.policyName, d.message.split("\n", 1)[1]) for d in response.diagnostics]


# --- numbers arrive as floats ------------------------------------------------------------------


def test_gpu_pool_sizes_arrive_as_floats_and_are_still_judged():
    big = {**GPU_POOL, "scalingConfig": {"maxSize": 40, "minSize": 3}}
    assert analyze(NODE_GROUP, big) == [
        ("gpu-pool-max-size", "scalingConfig.maxSize is 40, above the cap of 16 nodes per GPU pool Fix: Lower the pool's "
                              "max (scalingConfig.maxSize) to at most 16, or raise maxGpuPoolNodes in the pack config."),
        ("gpu-pool-scales-to-zero", "scalingConfig.minSize is 3: the GPU pool keeps 3 node(s) running when idle Fix: Set "
                                    "the pool's min (scalingConfig.minSize) to 0; the Cluster Autoscaler adds nodes when GPU pods wait."),
    ]
    assert analyze(NODE_GROUP, GPU_POOL) == []


def test_pack_config_numbers_arrive_as_floats_too():
    assert [m[:37] for _, m in analyze(NODE_GROUP, GPU_POOL, **{"gpu-pool-max-size": {"maxGpuPoolNodes": 2}})] == [
        "scalingConfig.maxSize is 4, above the"]


def test_gpu_counts_as_floats_equal_their_string_form():
    job = gpu_job()
    pod(job)["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 1}, "requests": {"nvidia.com/gpu": "1"}}
    assert analyze(JOB, job) == []


def test_production_replicas_arrive_as_floats():
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "resnet", "namespace": "team-vision"},
                  "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app.kubernetes.io/component": "modelService",
                                                                               "cloudml.io/workload": "resnet"}}}}}
    budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "resnet", "namespace": "team-vision"},
              "spec": {"selector": {"matchLabels": {"cloudml.io/workload": "resnet"}}}}
    assert analyze_stack((DEPLOYMENT, "resnet", deployment), ("kubernetes:policy/v1:PodDisruptionBudget", "resnet", budget),
                         stack="team-vision-prod") == []


# --- unknown values are not judged --------------------------------------------------------------


def test_an_unknown_image_is_not_judged():
    job = gpu_job()
    for container in pod(job)["initContainers"] + pod(job)["containers"]:
        container["image"] = UNKNOWN_STRING_VALUE
    assert analyze(JOB, job) == []


@pytest.mark.parametrize("field", ["privileged", "allowPrivilegeEscalation", "runAsNonRoot", "capabilities", "seccompProfile"])
def test_unknown_security_context_fields_are_not_judged(field):
    job = gpu_job()
    pod(job)["containers"][0]["securityContext"][field] = UNKNOWN_BOOLEAN_VALUE
    assert analyze(JOB, job) == []


def test_a_whole_unknown_security_context_or_pod_spec_is_not_judged():
    job = gpu_job()
    pod(job)["containers"][0]["securityContext"] = UNKNOWN_STRING_VALUE
    assert analyze(JOB, job) == []
    job = gpu_job()
    job["spec"]["template"]["spec"] = UNKNOWN_STRING_VALUE
    assert analyze(JOB, job) == []


def test_unknown_gpu_counts_tolerations_and_selectors_are_not_judged():
    for change in (
        lambda p: p["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": UNKNOWN_NUMBER_VALUE}),
        lambda p: p.update(tolerations=UNKNOWN_ARRAY_VALUE),
        lambda p: p.update(nodeSelector=UNKNOWN_STRING_VALUE),
        lambda p: p["nodeSelector"].update({"cloudml.io/gpu-type": UNKNOWN_STRING_VALUE}),
    ):
        job = gpu_job()
        change(pod(job))
        assert analyze(JOB, job) == []


def test_a_pod_on_gpu_nodes_whose_gpu_limits_are_unknown_is_not_judged():
    """A team pod selecting a GPU pool is reported for having no GPU limit only when every limit is known."""
    def sneaky() -> dict:
        job = gpu_job()
        for kind in ("requests", "limits"):
            pod(job)["containers"][0]["resources"][kind].pop("nvidia.com/gpu")
        return job

    def gpu_findings(job: dict) -> list[str]:
        return [m for policy, m in analyze(JOB, job) if policy == "gpu-resources"]
    assert [m.split(",", 1)[0] for m in gpu_findings(sneaky())] == [
        'spec.template.spec selects a GPU pool (cloudml.io/gpu-type (any GPU type) or nvidia.com/gpu.present: "true") '
        "and tolerates the GPU taint nvidia.com/gpu=true:NoSchedule"]
    for change in (
        lambda p: p["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": UNKNOWN_NUMBER_VALUE}),
        lambda p: p["containers"][0]["resources"].update(limits=UNKNOWN_STRING_VALUE),
        lambda p: p["containers"][0].update(resources=UNKNOWN_STRING_VALUE),
        lambda p: p.update(containers=UNKNOWN_ARRAY_VALUE),
        lambda p: p["containers"].append(UNKNOWN_STRING_VALUE),
    ):
        job = sneaky()
        change(pod(job))
        assert gpu_findings(job) == []


def lb(annotations, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "resnet", "namespace": "team-vision", "annotations": annotations},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}], **spec}}


def test_unknown_load_balancer_settings_are_not_judged():
    assert analyze(SERVICE, lb({SCHEME: UNKNOWN_STRING_VALUE})) == []
    assert analyze(SERVICE, lb(UNKNOWN_STRING_VALUE)) == []
    assert analyze(SERVICE, lb({SCHEME: "internet-facing"}, loadBalancerSourceRanges=UNKNOWN_ARRAY_VALUE)) == []
    assert analyze(SERVICE, lb({SCHEME: "internet-facing"}, loadBalancerSourceRanges=["10.0.0.0/8", UNKNOWN_STRING_VALUE])) == []
    assert analyze(SERVICE, {**lb({}), "spec": {"type": UNKNOWN_STRING_VALUE}}) == []
    # What is known is still judged.
    assert analyze(SERVICE, lb({SCHEME: "internet-facing"}, loadBalancerSourceRanges=["0.0.0.0/0", UNKNOWN_STRING_VALUE])) == [
        ("load-balancer-internal", "spec.loadBalancerSourceRanges[0] is 0.0.0.0/0, which admits the whole internet Fix: List the "
                                   "CIDRs allowed to connect in spec.loadBalancerSourceRanges (never 0.0.0.0/0), or set "
                                   f'metadata.annotations["{SCHEME}"] to internal.')]


def test_unknown_node_group_sizes_are_not_judged():
    assert analyze(NODE_GROUP, {**GPU_POOL, "scalingConfig": {"maxSize": UNKNOWN_NUMBER_VALUE, "minSize": UNKNOWN_NUMBER_VALUE}}) == []


def test_unknown_quota_and_idle_settings_are_not_judged():
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-vision"}}
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "gpu", "namespace": "team-vision"},
             "spec": {"hard": UNKNOWN_STRING_VALUE}}
    assert analyze_stack(("kubernetes:core/v1:Namespace", "ns", namespace), ("kubernetes:core/v1:ResourceQuota", "q", quota)) == []
    job = gpu_job()
    pod(job)["containers"][0].update(command=UNKNOWN_ARRAY_VALUE, env=[])
    assert analyze(JOB, job) == []


def test_the_compliant_job_passes_through_the_engine():
    analyzer = servicer()
    assert analyze(JOB, gpu_job(), analyzer=analyzer) == []
    privileged = copy.deepcopy(gpu_job())
    pod(privileged)["containers"][0]["securityContext"]["privileged"] = True
    assert analyze(JOB, privileged, analyzer=analyzer) == [
        ("pod-security-restricted", "spec.template.spec.containers[0] (main).securityContext.privileged is true Fix: Remove it.")]


def test_a_team_stack_reading_a_production_platform_is_production_in_the_engine():
    service = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "resnet", "namespace": "team-vision"},
               "spec": {"replicas": 1, "template": {"metadata": {"labels": {"app.kubernetes.io/component": "modelService"}}}}}
    reference = ("pulumi:pulumi:StackReference", "vision-platform", {"name": "acme/cloudml/platform-prod", "outputs": {}})
    assert analyze_stack((DEPLOYMENT, "resnet", service), reference) == [
        ("model-service-availability", "spec.replicas is 1: a production model service needs at least 2 replicas Fix: "
                                       "Set replicas (or autoscale.minReplicas) to 2 or more."),
        ("model-service-availability", "no PodDisruptionBudget in namespace team-vision selects the pods of "
                                       "spec.template.metadata.labels Fix: Add a PodDisruptionBudget (maxUnavailable: 1) "
                                       "whose selector matches the Deployment's pod labels."),
    ]
