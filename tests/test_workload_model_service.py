"""kind: modelService — TensorFlow Serving rendered field by field: config files (text protos),
Deployment (flags, mounts, probes, GPUs, rollout), Service per `expose` (and what the platform's
load-balancer guard says about it), PodDisruptionBudget, KEDA ScaledObject and its PromQL."""

from __future__ import annotations

import pytest

from components.platform.tenancy import guard_objects
from components.render import RenderError
from components.spec import DEFAULT_SERVING_IMAGE, load_platform
from components.workloads.model_service import gpu_utilization_query, request_rate_query
from policies.pod_security import restricted_violations
from tests.k8s_schema import schema_errors
from tests.workload_fixtures import IMAGE, NAMESPACE, PROMETHEUS_URL, SERVICE_ACCOUNT, VOLUME_CLAIMS, by_kind, platform_outputs, platform_view, pod_templates, render_workload

SELECTOR = {"cloudml.io/team": "vision", "cloudml.io/workload": "resnet"}
SERVER_FLAGS = [
    "--port=8500",
    "--rest_api_port=8501",
    "--model_config_file=/cloudml/serving/models.config",
    "--model_config_file_poll_wait_seconds=60",
    "--file_system_poll_wait_seconds=30",
    "--monitoring_config_file=/cloudml/serving/monitoring.config",
]
BATCHING_FLAGS = ["--enable_batching", "--batching_parameters_file=/cloudml/serving/batching.config"]
GPU_QUERY = (
    'avg(DCGM_FI_DEV_GPU_UTIL{namespace="ns-of-vision"} * on (namespace, pod) group_left () '
    'max by (namespace, pod) (kube_pod_owner{namespace="ns-of-vision", owner_kind="ReplicaSet", owner_name=~"resnet-[a-z0-9]+"})) '
    "or vector(0)"
)
RATE_QUERY = (
    'sum(rate(:tensorflow:serving:request_count{namespace="ns-of-vision"}[2m]) * on (namespace, pod) group_left () '
    'max by (namespace, pod) (kube_pod_owner{namespace="ns-of-vision", owner_kind="ReplicaSet", owner_name=~"resnet-[a-z0-9]+"})) '
    "or vector(0)"
)
LATEST_CONFIG = """model_config_list {
  config {
    name: "resnet"
    base_path: "/cloudml/models/resnet"
    model_platform: "tensorflow"
    model_version_policy {
      latest {
        num_versions: 1
      }
    }
  }
}
"""


def service(**fields) -> dict:
    return {"kind": "modelService", "name": "resnet", "model": "resnet", **fields}


def render(**fields) -> dict[str, list[dict]]:
    return by_kind(render_workload(service(**fields)))


def main_container(objs: dict) -> dict:
    [container] = objs["Deployment"][0]["spec"]["template"]["spec"]["containers"]
    return container


VARIANTS = {
    "defaults": {},
    "gpu-autoscaled-batching": {"gpus": 1, "autoscale": {"maxReplicas": 4, "requestsPerSecond": 20}, "batching": {}},
    "internal-labelled": {"expose": "internal", "versionLabels": {"stable": 3, "canary": 4}},
    "internet-pinned": {"expose": "internet", "sourceCidrs": ["203.0.113.0/24"], "version": 7},
    "wrapped-with-data": {"preCommands": ["echo warm"], "volumes": [{"source": "shared", "mountPath": "/data"}]},
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_is_schema_valid_labelled_and_every_pod_restricted(variant):
    """Each object validates (Kubernetes 1.31, the KEDA CRD), lives in the team's namespace with the
    standard labels, and the pod passes Pod Security `restricted`."""
    objects = render_workload(service(**VARIANTS[variant]))
    for obj in objects:
        assert schema_errors(obj) == []
        assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["name"].startswith("resnet")
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == "modelService"
        assert obj["metadata"]["labels"]["cloudml.io/workload"] == "resnet"
    pods = [pod for obj in objects for pod in pod_templates(obj)]
    assert len(pods) == 1
    assert restricted_violations(pods[0]["spec"]) == []


def test_objects_without_autoscale_and_no_scaled_object():
    """ConfigMap, Deployment, Service and PDB; no ScaledObject when autoscale is unset; fixed replicas."""
    objs = render(replicas=3)
    assert {k: [o["metadata"]["name"] for o in v] for k, v in objs.items()} == {
        "ConfigMap": ["resnet-serving"], "Deployment": ["resnet"], "Service": ["resnet"], "PodDisruptionBudget": ["resnet"]}
    assert objs["Deployment"][0]["spec"]["replicas"] == 3


def test_pod_label_the_network_policy_admits_and_selector():
    """The pod keeps component=modelService (the LB NetworkPolicy selects it) and the selector labels."""
    deployment = render()["Deployment"][0]
    assert deployment["spec"]["selector"] == {"matchLabels": SELECTOR}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "modelService"
    assert SELECTOR.items() <= labels.items()
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == SERVICE_ACCOUNT


def test_rolling_update_surges_one_pod_and_never_drops_capacity():
    assert render()["Deployment"][0]["spec"]["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_default_image_is_the_serving_image_not_the_trainer():
    assert main_container(render())["image"] == DEFAULT_SERVING_IMAGE
    assert DEFAULT_SERVING_IMAGE != IMAGE
    assert main_container(render(image="example.com/serving:1"))["image"] == "example.com/serving:1"


def test_server_command_and_exact_flags_then_user_args():
    container = main_container(render(args=["--rest_api_timeout_in_ms=5000"]))
    assert container["command"] == ["tensorflow_model_server"]
    assert container["args"] == SERVER_FLAGS + ["--rest_api_timeout_in_ms=5000"]


def test_batching_adds_its_flags_and_file():
    container = main_container(render(batching={"maxBatchSize": 64}))
    assert container["args"] == SERVER_FLAGS + BATCHING_FLAGS


def test_user_command_replaces_the_binary_and_still_gets_the_flags():
    container = main_container(render(command=["/opt/serve.sh"]))
    assert container["command"] == ["/opt/serve.sh"]
    assert container["args"] == SERVER_FLAGS


def test_pre_commands_wrap_the_server():
    """preCommands run in a shell first; the server and its flags reach `"$@"` untouched."""
    container = main_container(render(preCommands=["echo warm"]))
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert container["command"][2] == 'set -e\necho warm\nexec "$$@"\n'  # `$$`: the kubelet hands the shell `$`
    assert container["args"] == ["tensorflow_model_server", *SERVER_FLAGS]


def test_config_map_latest_policy_and_monitoring():
    """Default: the highest version, polled, so an upload to S3 is served without a redeploy."""
    data = render()["ConfigMap"][0]["data"]
    assert data == {
        "models.config": LATEST_CONFIG,
        "monitoring.config": 'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n',
    }


def test_config_pinned_version_serves_only_it():
    text = render(version=7)["ConfigMap"][0]["data"]["models.config"]
    assert text == LATEST_CONFIG.replace("      latest {\n        num_versions: 1\n", "      specific {\n        versions: 7\n")


def test_config_version_labels_serve_exactly_the_labelled_versions():
    text = render(versionLabels={"stable": 3, "canary": 4})["ConfigMap"][0]["data"]["models.config"]
    assert text == """model_config_list {
  config {
    name: "resnet"
    base_path: "/cloudml/models/resnet"
    model_platform: "tensorflow"
    model_version_policy {
      specific {
        versions: 3
        versions: 4
      }
    }
    version_labels {
      key: "canary"
      value: 4
    }
    version_labels {
      key: "stable"
      value: 3
    }
  }
}
"""


def test_batching_parameters_text():
    data = render(batching={"maxBatchSize": 64, "batchTimeoutMicros": 500, "maxEnqueuedBatches": 10, "numBatchThreads": 2})["ConfigMap"][0]["data"]
    assert data["batching.config"] == (
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 500 }\n"
        "max_enqueued_batches { value: 10 }\nnum_batch_threads { value: 2 }\n"
    )


def test_config_change_rolls_the_pods_and_user_annotations_stay():
    """The pod template carries a hash of the config files: a new version or label rolls the pods."""
    first = render(annotations={"example.com/owner": "ml"})["Deployment"][0]["spec"]["template"]["metadata"]["annotations"]
    pinned = render(version=7)["Deployment"][0]["spec"]["template"]["metadata"]["annotations"]
    assert first["example.com/owner"] == "ml"
    assert first["prometheus.io/port"] == "8501" and first["prometheus.io/path"] == "/monitoring/prometheus/metrics"
    assert len(first["cloudml.io/serving-config-hash"]) == 16
    assert first["cloudml.io/serving-config-hash"] != pinned["cloudml.io/serving-config-hash"]


def test_config_files_and_models_mounted_read_only():
    """Config from the ConfigMap at /cloudml/serving; the team's models prefix (the platform's
    read-only Mountpoint-for-S3 claim) at /cloudml/models; data mounts come first, untouched."""
    objs = render(volumes=[{"source": "shared", "mountPath": "/data"}])
    pod = objs["Deployment"][0]["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "data-shared", "persistentVolumeClaim": {"claimName": VOLUME_CLAIMS["shared"]}},
        {"name": "serving-config", "configMap": {"name": "resnet-serving"}},
        {"name": "serving-models", "persistentVolumeClaim": {"claimName": VOLUME_CLAIMS["models"], "readOnly": True}},
    ]
    assert main_container(objs)["volumeMounts"] == [
        {"name": "data-shared", "mountPath": "/data", "readOnly": False},
        {"name": "serving-config", "mountPath": "/cloudml/serving", "readOnly": True},
        {"name": "serving-models", "mountPath": "/cloudml/models", "readOnly": True},
    ]


def test_ports_and_probes():
    container = main_container(render())
    assert container["ports"] == [
        {"name": "grpc", "containerPort": 8500, "protocol": "TCP"},
        {"name": "http", "containerPort": 8501, "protocol": "TCP"},
    ]
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/v1/models/resnet", "port": "http"}, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3}
    assert container["livenessProbe"] == {
        "tcpSocket": {"port": "grpc"}, "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 4}
    # A slow first load (minutes over the S3 mount) is covered by the startup probe, not a fixed delay.
    assert container["startupProbe"] == {"tcpSocket": {"port": "grpc"}, "periodSeconds": 10, "failureThreshold": 90}


def test_gpus_limits_equal_requests_node_selector_and_toleration():
    objs = render(gpus=2, gpuType="l4")
    pod = objs["Deployment"][0]["spec"]["template"]["spec"]
    resources = main_container(objs)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "2"
    assert pod["nodeSelector"] == {"cloudml.io/gpu-type": "l4"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_cpu_only_service_has_no_gpu_scheduling():
    pod = render()["Deployment"][0]["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert "nvidia.com/gpu" not in main_container(render())["resources"]["limits"]


SERVICE_PORTS = [
    {"name": "grpc", "port": 8500, "targetPort": "grpc", "protocol": "TCP"},
    {"name": "http", "port": 8501, "targetPort": "http", "protocol": "TCP"},
]
NLB = {"service.beta.kubernetes.io/aws-load-balancer-type": "external",
       "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip"}


def test_cluster_service_is_cluster_ip():
    svc = render()["Service"][0]
    assert "annotations" not in svc["metadata"]
    assert svc["spec"] == {"type": "ClusterIP", "selector": SELECTOR, "ports": SERVICE_PORTS}


def test_internal_service_is_an_internal_nlb_with_ip_targets():
    svc = render(expose="internal")["Service"][0]
    assert svc["metadata"]["annotations"] == {**NLB, "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"}
    assert svc["spec"] == {"type": "LoadBalancer", "loadBalancerClass": "service.k8s.aws/nlb", "selector": SELECTOR, "ports": SERVICE_PORTS}


def test_internet_service_is_internet_facing_only_from_the_source_cidrs():
    svc = render(expose="internet", sourceCidrs=["203.0.113.0/24", "198.51.100.7/32"])["Service"][0]
    assert svc["metadata"]["annotations"] == {**NLB, "service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"}
    assert svc["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24", "198.51.100.7/32"]
    assert svc["spec"]["type"] == "LoadBalancer"


def test_workload_annotations_cannot_change_the_scheme():
    """A workload cannot set load-balancer annotations at all (the contract reserves every
    *.kubernetes.io prefix), and the ones cloudml writes come after the workload's own."""
    from components.errors import ConfigError

    with pytest.raises(ConfigError, match="uses a prefix that cloudml or Kubernetes manages"):
        render(expose="internal", annotations={"service.beta.kubernetes.io/aws-load-balancer-scheme": "internet-facing"})
    svc = render(expose="internal", annotations={"example.com/owner": "ml"})["Service"][0]
    assert svc["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-scheme"] == "internal"
    assert list(svc["metadata"]["annotations"])[0] == "example.com/owner"


def guard_admits(service_obj: dict, **load_balancing) -> bool:
    """Evaluate the platform's load-balancer ValidatingAdmissionPolicy (its CEL) on a Service."""
    celpy = pytest.importorskip("celpy", reason="cel-python evaluates the guard's CEL")
    from celpy import celtypes

    platform = {"name": "ml", "admins": ["arn:aws:iam::111122223333:role/a"], "loadBalancing": load_balancing}
    policy, _ = guard_objects(load_platform(platform))
    env = celpy.Environment()
    activation = {"object": celpy.json_to_cel(service_obj), "variables": celtypes.MapType({})}
    for variable in policy["spec"]["variables"]:
        value = env.program(env.compile(variable["expression"])).evaluate(activation)
        activation["variables"] = celtypes.MapType({**activation["variables"], celtypes.StringType(variable["name"]): value})
    return all(bool(env.program(env.compile(v["expression"])).evaluate(activation)) for v in policy["spec"]["validations"])


def test_load_balancer_guard_admits_internal_and_cluster_services_on_a_closed_platform():
    assert guard_admits(render(expose="internal")["Service"][0])
    assert guard_admits(render()["Service"][0])


def test_load_balancer_guard_decides_internet_facing_by_the_platform():
    """Refused unless the platform opts in, and then only from its CIDRs."""
    svc = render(expose="internet", sourceCidrs=["203.0.113.0/24"])["Service"][0]
    assert not guard_admits(svc)
    assert guard_admits(svc, allowInternetFacing=True, internetFacingCidrs=["203.0.113.0/24"])
    assert not guard_admits(svc, allowInternetFacing=True, internetFacingCidrs=["192.0.2.0/24"])


def test_pdb_lets_one_pod_go_at_a_time():
    assert render()["PodDisruptionBudget"][0]["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": SELECTOR}}


def test_scaled_object_on_gpu_utilization_with_default_behavior():
    """KEDA scales the Deployment on the pods' average GPU utilization; scale up fast, down after 300 s.
    The Deployment leaves replicas to the autoscaler (Pulumi would reset it on every update)."""
    objs = render(gpus=1, autoscale={"minReplicas": 2, "maxReplicas": 6})
    assert "replicas" not in objs["Deployment"][0]["spec"]
    [scaled] = objs["ScaledObject"]
    assert scaled["apiVersion"] == "keda.sh/v1alpha1" and scaled["metadata"]["name"] == "resnet"
    assert scaled["spec"] == {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "resnet"},
        "minReplicaCount": 2,
        "maxReplicaCount": 6,
        "pollingInterval": 15,
        "cooldownPeriod": 300,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                {"type": "Percent", "value": 100, "periodSeconds": 15}, {"type": "Pods", "value": 4, "periodSeconds": 15}]},
            "scaleDown": {"stabilizationWindowSeconds": 300},
        }}},
        "triggers": [{"type": "prometheus", "metricType": "Value", "metadata": {
            "serverAddress": PROMETHEUS_URL, "query": GPU_QUERY, "threshold": "70"}}],
    }


def test_scaled_object_stabilization_and_request_rate_trigger():
    objs = render(gpus=1, autoscale={"maxReplicas": 4, "gpuUtilization": 55, "requestsPerSecond": 2.5,
                                     "scaleUpStabilization": "1m", "scaleDownStabilization": "10m"})
    spec = objs["ScaledObject"][0]["spec"]
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 60
    assert behavior["scaleDown"] == {"stabilizationWindowSeconds": 600}
    assert spec["triggers"] == [
        {"type": "prometheus", "metricType": "Value", "metadata": {"serverAddress": PROMETHEUS_URL, "query": GPU_QUERY, "threshold": "55"}},
        {"type": "prometheus", "metricType": "AverageValue",
         "metadata": {"serverAddress": PROMETHEUS_URL, "query": RATE_QUERY, "threshold": "2.5"}},
    ]
    integral = render(gpus=1, autoscale={"maxReplicas": 4, "requestsPerSecond": 20})["ScaledObject"][0]["spec"]["triggers"][1]
    assert integral["metadata"]["threshold"] == "20"


def test_a_service_without_gpus_scales_on_its_request_rate_only():
    """Its GPU-utilization query would always answer 0 (no DCGM series for a GPU-less pod) and pin the
    service at minReplicas: there is no GPU trigger, only the request-rate one the contract demands."""
    spec = render(autoscale={"maxReplicas": 4, "requestsPerSecond": 20})["ScaledObject"][0]["spec"]
    assert spec["triggers"] == [{"type": "prometheus", "metricType": "AverageValue",
                                 "metadata": {"serverAddress": PROMETHEUS_URL, "query": RATE_QUERY, "threshold": "20"}}]
    woken = render(autoscale={"minReplicas": 0, "maxReplicas": 4, "scaleToZero": {
        "activationQuery": WAKE_QUERY, "threshold": 10}})["ScaledObject"][0]["spec"]["triggers"]
    assert [t["metadata"]["query"] for t in woken] == [WAKE_QUERY]


def test_queries_select_the_service_pods_by_their_replica_set():
    """Exact PromQL: one value, over the Deployment's pods only (ReplicaSet `<name>-<hash>`), 0 when empty."""
    assert gpu_utilization_query(NAMESPACE, "resnet") == GPU_QUERY
    assert request_rate_query(NAMESPACE, "resnet") == RATE_QUERY


def test_without_a_models_volume_rendering_stops():
    outputs = platform_outputs()
    outputs["teams"]["vision"]["volumes"].pop("models")
    with pytest.raises(RenderError, match="no `models` volume"):
        render_workload(service(), view=platform_view(teams=outputs["teams"]))


def test_autoscale_without_prometheus_stops():
    with pytest.raises(RenderError, match="prometheusUrl"):
        render_workload(service(gpus=1, autoscale={"maxReplicas": 2}), view=platform_view(prometheusUrl=None))


WAKE_QUERY = 'sum(rate(gateway_requests_total{route="resnet"}[2m]))'


def test_scale_to_zero_wakes_on_the_activation_query_and_scales_on_it_while_running():
    """minReplicas 0 with scaleToZero: KEDA may go to zero replicas; the activation query (measured outside
    the service, since its own metrics vanish with its last pod) wakes it past activationThreshold, and
    scales it per replica on `threshold` while it runs, beside the GPU trigger."""
    scaled = render(gpus=1, autoscale={"minReplicas": 0, "maxReplicas": 4, "scaleToZero": {
        "activationQuery": WAKE_QUERY, "activationThreshold": 0.5, "threshold": 10}})["ScaledObject"][0]
    assert schema_errors(scaled) == []
    assert scaled["spec"]["minReplicaCount"] == 0 and scaled["spec"]["maxReplicaCount"] == 4
    gpu, wake = scaled["spec"]["triggers"]
    assert gpu["metadata"]["threshold"] == "70"
    assert wake == {"type": "prometheus", "metricType": "AverageValue", "metadata": {
        "serverAddress": PROMETHEUS_URL, "query": WAKE_QUERY, "threshold": "10", "activationThreshold": "0.5"}}


def test_without_scale_to_zero_there_is_no_activation_trigger_and_at_least_one_replica():
    scaled = render(gpus=1, autoscale={"maxReplicas": 4})["ScaledObject"][0]
    assert scaled["spec"]["minReplicaCount"] == 1
    assert [t["metadata"].get("activationThreshold") for t in scaled["spec"]["triggers"]] == [None]
