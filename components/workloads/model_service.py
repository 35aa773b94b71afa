"""kind: modelService — TensorFlow Serving of one model: its config files, Deployment, Service,
PodDisruptionBudget and (with `autoscale`) a KEDA ScaledObject.

Also the text-proto config files TF Serving reads and the PromQL queries KEDA scales on, as pure
functions so they can be tested on their own (the queries with promtool).
"""

from __future__ import annotations

import hashlib
from typing import Any

from components.render import RenderError, WorkloadContext, wrap_command
from components.spec import AutoscaleSpec, BatchingSpec, ModelServiceWorkload, serving_config_map_name
from components.workloads.common import service_exposure

SERVER_BINARY = "tensorflow_model_server"
GRPC_PORT = 8500
HTTP_PORT = 8501
# The ConfigMap's files; under /cloudml, which data mounts may not use (fieldtypes reserves it).
CONFIG_DIR = "/cloudml/serving"
MODELS_CONFIG = "models.config"
MONITORING_CONFIG = "monitoring.config"
BATCHING_CONFIG = "batching.config"
# The team's prefix of the models bucket (`<bucket>/<team>/`), read-only; a model's versions are
# `<MODELS_DIR>/<model>/<version>/`. Under /cloudml too, so no data mount of the workload can hide it.
MODELS_DIR = "/cloudml/models"
MODELS_VOLUME_SOURCE = "models"
METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's PrometheusExporter::kPrometheusPath
# Pod annotation holding a hash of the config files: changing a version, label or batching
# parameter rolls the pods, so new pods load the whole new config before they take traffic.
CONFIG_HASH_ANNOTATION = "cloudml.io/serving-config-hash"
# TF Serving's `/tensorflow/serving/request_count` (labels model_name, status) as its Prometheus
# exporter names it: every character outside [a-zA-Z0-9_] becomes ':'; counters get no `_total`.
REQUEST_COUNT_METRIC = ":tensorflow:serving:request_count"
GPU_UTILIZATION_METRIC = "DCGM_FI_DEV_GPU_UTIL"
# Deployment pods are owned by a ReplicaSet named `<deployment>-<pod-template-hash>` (alphanumeric).
# Selecting pods through that owner is exact: a name regex like `<name>-.*` would also take the pods
# of another workload called `<name>-v2` (a training Job on the same GPUs, say).
POD_OWNER_METRIC = "kube_pod_owner"  # kube-state-metrics: labels namespace, pod, owner_kind, owner_name


def values(context: WorkloadContext, shared: dict[str, Any]) -> dict[str, Any]:
    workload: ModelServiceWorkload = context.workload
    team, platform = context.team, context.platform
    claims = platform.teams[team.name].volumes
    # The platform must offer the team's `models` volume; the cross-stack check that says so to the
    # user belongs in platform_view.team_platform_problems. Here it is a rendering precondition.
    if MODELS_VOLUME_SOURCE not in claims:
        raise RenderError(f"modelService {workload.name}: the platform offers team {team.name} no `models` volume")
    if workload.autoscale is not None and not platform.prometheus_url:
        raise RenderError(f"modelService {workload.name}: autoscale needs the platform's Prometheus (prometheusUrl)")

    config_files = {
        MODELS_CONFIG: models_config(workload.model, f"{MODELS_DIR}/{workload.model}", workload.version, workload.version_labels),
        MONITORING_CONFIG: monitoring_config(),
    }
    if workload.batching is not None:
        config_files[BATCHING_CONFIG] = batching_config(workload.batching)
    config_hash = hashlib.sha256(repr(sorted(config_files.items())).encode()).hexdigest()[:16]

    command, args = wrap_command(
        workload.command or [SERVER_BINARY], server_flags(workload.batching is not None) + workload.args,
        workload.pre_commands, workload.post_commands,
    )
    namespace = shared["namespace"]
    config_map = serving_config_map_name(workload.name)
    return {
        **shared,
        "image": workload.image or team.defaults.serving_image,
        "command": command,
        "args": args,
        "config_map": config_map,
        "config_files": config_files,
        "pod_annotations": {
            **shared["annotations"],
            CONFIG_HASH_ANNOTATION: config_hash,
            # Hints for annotation-based scrapers; the Prometheus operator ignores them.
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(HTTP_PORT),
            "prometheus.io/path": METRICS_PATH,
        },
        "pod_volumes": shared["pod_volumes"] + [
            {"name": "serving-config", "configMap": {"name": config_map}},
            {"name": "serving-models", "persistentVolumeClaim": {"claimName": claims[MODELS_VOLUME_SOURCE], "readOnly": True}},
        ],
        "volume_mounts": shared["volume_mounts"] + [
            {"name": "serving-config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "serving-models", "mountPath": MODELS_DIR, "readOnly": True},
        ],
        "ports": [
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
            {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        ],
        # The server opens its ports only after the initial load of the model (ServerCore waits
        # for it), so the REST status answers once the model can be served.
        "readiness_probe": {
            "httpGet": {"path": f"/v1/models/{workload.model}", "port": "http"},
            "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 3,
        },
        # Loading a large model over the S3 mount takes minutes: up to 15 (90 x 10 s) before the
        # liveness probe starts counting.
        "startup_probe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 10, "failureThreshold": 90},
        # TCP, not the REST status: a server busy with a full batch queue may answer slowly, and
        # restarting a loaded, healthy server under load is the worst reaction.
        "liveness_probe": {
            "tcpSocket": {"port": "grpc"}, "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 4,
        },
        "service": service_values(workload, shared["annotations"]),
        "scaled_object": scaled_object_values(workload, namespace, platform.prometheus_url) if workload.autoscale else None,
    }


def server_flags(batching: bool) -> list[str]:
    """tensorflow_model_server flags; the user's args follow them."""
    flags = [
        f"--port={GRPC_PORT}",
        f"--rest_api_port={HTTP_PORT}",
        f"--model_config_file={CONFIG_DIR}/{MODELS_CONFIG}",
        # Re-read the config file every minute, so a ConfigMap update reaches running pods too.
        "--model_config_file_poll_wait_seconds=60",
        # How often the model directory is listed for new versions. Each listing is an S3 LIST
        # through the mount, per replica: every 30 s instead of the default 1 s.
        "--file_system_poll_wait_seconds=30",
        f"--monitoring_config_file={CONFIG_DIR}/{MONITORING_CONFIG}",
    ]
    if batching:
        flags += ["--enable_batching", f"--batching_parameters_file={CONFIG_DIR}/{BATCHING_CONFIG}"]
    return flags


def _text(value: str) -> str:
    """A text-proto string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def models_config(model: str, base_path: str, version: int | None, version_labels: dict[str, int]) -> str:
    """ModelServerConfig text proto serving one model.

    Default policy `latest { num_versions: 1 }`: TF Serving polls base_path, so a new version
    directory uploaded to S3 shows up on the mount and is served without a redeploy. A pinned
    version serves only that one; labels serve exactly the labelled versions.
    """
    lines = [
        "model_config_list {",
        "  config {",
        f"    name: {_text(model)}",
        f"    base_path: {_text(base_path)}",
        '    model_platform: "tensorflow"',
        "    model_version_policy {",
    ]
    versions = sorted(set(version_labels.values())) if version_labels else ([version] if version is not None else [])
    if versions:
        lines += ["      specific {", *(f"        versions: {v}" for v in versions), "      }"]
    else:
        lines += ["      latest {", "        num_versions: 1", "      }"]
    lines.append("    }")
    for label, labelled_version in sorted(version_labels.items()):
        lines += ["    version_labels {", f"      key: {_text(label)}", f"      value: {labelled_version}", "    }"]
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def monitoring_config() -> str:
    """MonitoringConfig text proto: Prometheus metrics on the REST port."""
    return f"prometheus_config {{\n  enable: true\n  path: {_text(METRICS_PATH)}\n}}\n"


def batching_config(batching: BatchingSpec) -> str:
    """BatchingParameters text proto (each field is a protobuf wrapper: `{ value: N }`)."""
    fields = {
        "max_batch_size": batching.max_batch_size,
        "batch_timeout_micros": batching.batch_timeout_micros,
        "max_enqueued_batches": batching.max_enqueued_batches,
        "num_batch_threads": batching.num_batch_threads,
    }
    return "".join(f"{key} {{ value: {value} }}\n" for key, value in fields.items())


def _promql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def service_pods(namespace: str, deployment: str) -> str:
    """One series per pod of the Deployment (value 1, labels namespace and pod) to join metrics on."""
    # Workload names are DNS labels: no regex metacharacters to escape.
    owner = deployment + "-[a-z0-9]+"
    return (
        f"max by (namespace, pod) ({POD_OWNER_METRIC}{{namespace={_promql_string(namespace)}, "
        f'owner_kind="ReplicaSet", owner_name=~{_promql_string(owner)}}})'
    )


def gpu_utilization_query(namespace: str, deployment: str) -> str:
    """Average GPU utilization (%) over every GPU of the service's pods; 0 when there is no series."""
    series = f"{GPU_UTILIZATION_METRIC}{{namespace={_promql_string(namespace)}}}"
    return f"avg({series} * on (namespace, pod) group_left () {service_pods(namespace, deployment)}) or vector(0)"


def request_rate_query(namespace: str, deployment: str) -> str:
    """Requests per second the service's pods receive in total (2-minute rate); 0 when none."""
    series = f"rate({REQUEST_COUNT_METRIC}{{namespace={_promql_string(namespace)}}}[2m])"
    return f"sum({series} * on (namespace, pod) group_left () {service_pods(namespace, deployment)}) or vector(0)"


def scaled_object_values(workload: ModelServiceWorkload, namespace: str, prometheus_url: str) -> dict[str, Any]:
    """The ScaledObject's bounds, behaviour and triggers. A service without GPUs gets no GPU trigger (its
    query would always answer 0 and hold it at the minimum); the contract makes it have another one."""
    autoscale: AutoscaleSpec = workload.autoscale
    triggers = []
    if workload.gpus:
        triggers.append({
            "type": "prometheus",
            # Value: the HPA scales by current replicas x average / target, the rule for an average.
            "metricType": "Value",
            "metadata": {
                "serverAddress": prometheus_url,
                "query": gpu_utilization_query(namespace, workload.name),
                "threshold": str(autoscale.gpu_utilization),
            },
        })
    if autoscale.requests_per_second is not None:
        triggers.append({
            "type": "prometheus",
            # AverageValue: the HPA divides the total rate by the replicas it wants, per replica target.
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_url,
                "query": request_rate_query(namespace, workload.name),
                "threshold": _number_text(autoscale.requests_per_second),
            },
        })
    if autoscale.scale_to_zero is not None:
        wake = autoscale.scale_to_zero
        triggers.append({
            "type": "prometheus",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_url,
                "query": wake.activation_query,
                "threshold": _number_text(wake.threshold),
                # KEDA scales from 0 to 1 when the value exceeds this (the HPA takes over from there).
                "activationThreshold": _number_text(wake.activation_threshold),
            },
        })
    return {
        "min": autoscale.min_replicas,
        "max": autoscale.max_replicas,
        "behavior": {
            "scaleUp": {
                "stabilizationWindowSeconds": autoscale.scale_up_stabilization or 0,
                # At most double, or add 4 pods, every 15 s, whichever is more (the HPA's defaults).
                "selectPolicy": "Max",
                "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 15},
                    {"type": "Pods", "value": 4, "periodSeconds": 15},
                ],
            },
            "scaleDown": {"stabilizationWindowSeconds": autoscale.scale_down_stabilization},
        },
        "triggers": triggers,
    }


def _number_text(value: float | int) -> str:
    """A threshold as KEDA parses it (a decimal string; 5.0 -> "5")."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def service_values(workload: ModelServiceWorkload, user_annotations: dict[str, str]) -> dict[str, Any]:
    """Type, annotations and source ranges of the Service, by `expose`."""
    scheme = {"cluster": None, "internal": "internal", "internet": "internet-facing"}[workload.expose]
    source_ranges = [str(c) for c in workload.source_cidrs] if workload.expose == "internet" else []
    return service_exposure(user_annotations, scheme, source_ranges)
