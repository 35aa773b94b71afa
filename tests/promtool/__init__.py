"""Running rules and `promtool test rules` unit tests with the real promtool, and the synthetic
series they use: helpers that write series with the label sets the real exporters produce.

dcgm-exporter (Kubernetes mapping on, scraped by a ServiceMonitor with honorLabels: true): `gpu`,
`UUID`, `pci_bus_id`, `device`, `modelName`, `Hostname` (`hostname` in newer exporters: SPECS says
match both), `DCGM_FI_DRIVER_VERSION`, and for a GPU a pod holds that pod's `namespace`, `pod`,
`container`; a GPU no pod holds keeps the scrape target's own namespace/pod/container (the
exporter's). Since dcgm-exporter 3.3.6, `DCGM_FI_DEV_XID_ERRORS` also carries `err_code` (the
value as text) and `err_msg` (internal/pkg/collector/gpu_collector.go toMetric, texts from
xid_errors.go): a new XID code is a NEW series and the old one goes stale, never a value change
of one series (`xid` writes them). Prometheus adds `instance`, `job`, `endpoint`, `service`. kube-state-metrics series carry `job="kube-state-metrics"` and the
labels its docs list for each metric. TF Serving's series of model services carry the target labels
our PodMonitor gives them (`model_service_target`, built from the real scrape object).
"""

from __future__ import annotations

import copy
import shutil
import subprocess
import zlib
from pathlib import Path

import yaml

from components.monitoring.rules import rule_groups
from components.platform.monitoring import scrape_objects
from components.spec import load_platform

NODE = "ip-10-40-1-23.us-west-2.compute.internal"
NODE_2 = "ip-10-40-2-47.us-west-2.compute.internal"
EXPORTER_POD = "dcgm-exporter-9xk2m"
EXPORTER_NAMESPACE = "cloudml-system"
KSM = {"job": "kube-state-metrics", "instance": "10.40.0.12:8080", "container": "kube-state-metrics",
       "endpoint": "http", "service": "kube-prometheus-stack-kube-state-metrics"}


def _meta_name(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label)


def model_service_target(namespace: str, pod: str, workload: str, container: str = "serving",
                         address: str = "10.40.1.40:8501") -> dict[str, str]:
    """The target labels Prometheus gives a model-service pod's series through the platform-dev
    PodMonitor (components.platform.monitoring.scrape_objects): prometheus-operator's defaults for a
    PodMonitor endpoint (namespace, container, pod, job `<monitor namespace>/<monitor name>`,
    endpoint = the port's name, instance = the address), then the endpoint's own relabelings
    applied to the pod's labels (cloudml.io/team, cloudml.io/workload as render.py sets them)."""
    from conftest import sample_config  # tests/ is on sys.path when the test modules import this

    (monitor,) = [o for o in scrape_objects(load_platform(sample_config("platform-dev")["cloudml:platform"]))
                  if o["kind"] == "PodMonitor"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    pod_labels_ = {"cloudml.io/team": namespace.removeprefix("team-"), "cloudml.io/workload": workload,
                   "app.kubernetes.io/component": "modelService"}
    assert all(pod_labels_.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    meta = {f"__meta_kubernetes_pod_label_{_meta_name(k)}": v for k, v in pod_labels_.items()}
    labels = {"instance": address, "namespace": namespace, "container": container, "pod": pod,
              "job": f"{monitor['metadata']['namespace']}/{monitor['metadata']['name']}", "endpoint": endpoint["port"]}
    for relabel in endpoint.get("relabelings", []):
        assert relabel.get("action", "replace") == "replace" and "regex" not in relabel, relabel
        labels[relabel["targetLabel"]] = ";".join(meta.get(source, "") for source in relabel["sourceLabels"])
    return labels


def promtool() -> str:
    """The promtool binary; fails (never skips) when it is missing: scripts/test installs it."""
    path = shutil.which("promtool")
    assert path, "promtool is not installed: run scripts/test (installs Debian's `prometheus`) or apt-get install prometheus"
    return path


def series(metric: str, labels: dict[str, str]) -> str:
    return metric + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def gpu_labels(gpu: int = 0, node: str = NODE, namespace: str | None = "team-vision", pod: str | None = "resnet-baseline-x7k2p",
               container: str = "trainer", node_label: str = "Hostname", **extra: str) -> dict[str, str]:
    """Labels of one dcgm-exporter series; namespace=None is a GPU no pod holds; node_label
    "hostname" is a newer exporter's spelling of `Hostname`. The UUID is unique per node and GPU."""
    assert node_label in ("Hostname", "hostname"), node_label
    labels = {
        "gpu": str(gpu),
        "UUID": f"GPU-5fd4b3a2-0c1e-4d2b-{zlib.crc32(node.encode()) & 0xFFFF:04x}-1b2c3d4e5f6{gpu}",
        "pci_bus_id": f"00000000:00:1{gpu + 6}.0",
        "device": f"nvidia{gpu}",
        "modelName": "NVIDIA A10G",
        node_label: node,
        "DCGM_FI_DRIVER_VERSION": "550.127.05",
    }
    if namespace is None:
        labels.update(namespace=EXPORTER_NAMESPACE, pod=EXPORTER_POD, container="exporter")
    else:
        labels.update(namespace=namespace, pod=pod, container=container)
    labels.update(instance="10.40.1.23:9400", job="dcgm-exporter", endpoint="metrics", service="dcgm-exporter")
    labels.update(extra)
    return labels


XID_ERRORS = "DCGM_FI_DEV_XID_ERRORS"
# err_msg of the codes the tests use (dcgm-exporter internal/pkg/collector/xid_errors.go).
XID_MESSAGES = {0: "No Error", 43: "GPU stopped processing", 48: "Double Bit ECC Error", 79: "GPU has fallen off the bus"}


def dcgm(metric: str, values: str, **kwargs) -> dict:
    assert metric != XID_ERRORS or "err_code" in kwargs, "XID series carry err_code/err_msg: use xid()"
    return {"series": series(metric, gpu_labels(**kwargs)), "values": values}


def xid_labels(code: int, **kwargs) -> dict[str, str]:
    """Labels of the DCGM_FI_DEV_XID_ERRORS series of one GPU while its last XID is `code`."""
    return gpu_labels(**kwargs, err_code=str(code), err_msg=XID_MESSAGES[code])


def xid(code: int, values: str, **kwargs) -> dict:
    """The XID series of one GPU for `code`: its values should all be `code` (or `_` / `stale`).
    A GPU whose code changes has one such series per code, the old one ending in `stale` (the
    staleness marker Prometheus writes when a series leaves the scrape) where the new one begins."""
    assert all(v.split("x")[0] in (str(code), "_", "stale") for v in values.split()), (code, values)
    return {"series": series(XID_ERRORS, xid_labels(code, **kwargs)), "values": values}


def ksm(metric: str, values: str, **labels: str) -> dict:
    return {"series": series(metric, {**labels, **KSM}), "values": values}


def pod_labels(namespace: str, pod: str, workload: str, component: str, values: str = "1x300", **extra: str) -> dict:
    """kube_pod_labels of a cloudml workload pod (labels allowlisted in kube-state-metrics)."""
    team = namespace.removeprefix("team-")
    return ksm("kube_pod_labels", values, namespace=namespace, pod=pod, uid=f"uid-{pod}",
               label_app_kubernetes_io_component=component, label_cloudml_io_team=team,
               label_cloudml_io_workload=workload, **extra)


def dev_environment(namespace: str, pod: str, workload: str, idle_timeout: int, started: int = 0) -> list[dict]:
    """kube-state-metrics series of a dev environment's pod: its labels (with its idle timeout in
    seconds), its start time (Unix seconds), its owning Job, active."""
    return [
        pod_labels(namespace, pod, workload, "devEnvironment", label_cloudml_io_idle_timeout=str(idle_timeout)),
        ksm("kube_pod_start_time", f"{started}x300", namespace=namespace, pod=pod, uid=f"uid-{pod}"),
        ksm("kube_pod_owner", "1x300", namespace=namespace, pod=pod, uid=f"uid-{pod}", owner_kind="Job",
            owner_name=workload, owner_is_controller="true"),
        ksm("kube_job_status_active", "1x300", namespace=namespace, job_name=workload),
    ]


def rules_file(rules: list[dict], path: Path, keep_annotations: tuple[str, ...] = ("summary",)) -> Path:
    """Write the PrometheusRules' groups as a Prometheus rules file.

    promtool compares annotations exactly; tests state the summary (it shows the labels reach
    the text) and the other annotations are dropped here (`promtool check rules` checks them)."""
    groups = copy.deepcopy(rule_groups(rules))
    for group in groups:
        for rule in group["rules"]:
            if "annotations" in rule:
                rule["annotations"] = {k: v for k, v in rule["annotations"].items() if k in keep_annotations}
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return path


def run_unit_tests(rules_path: Path, tests: list[dict], directory: Path, name: str = "tests.yaml") -> subprocess.CompletedProcess:
    """`promtool test rules` on these test cases (rule file beside them)."""
    test_file = directory / name
    test_file.write_text(yaml.safe_dump({
        "rule_files": [rules_path.name],
        "evaluation_interval": "1m",
        "tests": tests,
    }, sort_keys=False), encoding="utf-8")
    return subprocess.run([promtool(), "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120)
