"""`promtool test rules` cases for every alert, against the platform-dev sample stack's rules
(default thresholds: 85 C, idle under 5% for 2h, dev environments 1h past their own timeout, pools a10g max 4 and
l4-spot max 8). Each alert has a case where it fires on a bad series and one where it stays silent
on healthy (or deliberately near-miss) series."""

from __future__ import annotations

from promtool import (
    KSM,
    NODE,
    NODE_2,
    dcgm,
    dev_environment,
    gpu_labels,
    ksm,
    model_service_target,
    pod_labels,
    series,
    xid,
    xid_labels,
)

TEAM = {"namespace": "team-vision", "team": "vision"}
TRAINER_POD = "resnet-baseline-x7k2p"
SERVICE_POD = "resnet-7d9f8c6b5-abcde"


def case(name: str, alert: str, eval_time: str, input_series: list[dict], alerts: list[dict]) -> dict:
    return {
        "name": name,
        "interval": "1m",
        "input_series": input_series,
        "alert_rule_test": [{"eval_time": eval_time, "alertname": alert, "exp_alerts": alerts}],
    }


def fired(summary: str, **labels: str) -> dict:
    return {"exp_labels": labels, "exp_annotations": {"summary": summary}}


def node_series(node: str, pool: str | None, ready: str = "1x300", gpus: str | None = None) -> list[dict]:
    out = [ksm("kube_node_status_condition", ready, node=node, condition="Ready", status="true")]
    if pool is not None:
        out.append(ksm("kube_node_labels", "1x300", node=node, label_cloudml_io_pool=pool, label_cloudml_io_gpu_type=pool))
    if gpus is not None:
        out.append(ksm("kube_node_status_allocatable", gpus, node=node, resource="nvidia_com_gpu", unit="integer"))
    return out


def gpu_cases() -> list[dict]:
    gpu = gpu_labels()
    return [
        # dcgm-exporter >= 3.3.6: each XID code is its own series (err_code, err_msg); a new code
        # ends the old code's series (staleness marker) and begins a new one.
        case("XID 79 on a GPU: the err_code 0 series ends, the err_code 79 series begins", "GpuXidError", "12m",
             [xid(0, "0x9 stale"), xid(79, "_x10 79x20")],
             [fired(f"GPU 0 on {NODE} reported XID 79", severity="critical", **xid_labels(79), team="vision")]),
        case("a second code: the err_code 79 series ends, the err_code 48 series begins", "GpuXidError", "24m",
             [xid(0, "0x9 stale"), xid(79, "_x10 79x10 stale"), xid(48, "_x21 48x10")],
             [fired(f"GPU 0 on {NODE} reported XID 48", severity="critical", **xid_labels(48), team="vision")]),
        case("the switch to XID 79 was more than 10 minutes ago", "GpuXidError", "25m",
             [xid(0, "0x9 stale"), xid(79, "_x10 79x20")], []),
        case("GPU shows up with an XID code", "GpuXidError", "14m",
             [xid(48, "_x12 48x10", gpu=1, namespace=None)],
             [fired(f"GPU 1 on {NODE} reported XID 48", severity="critical", **xid_labels(48, gpu=1, namespace=None))]),
        # The XID kills the pod: the GPU's series moves from the pod's labels to the exporter's.
        case("XID kills the pod: series moves to the exporter's labels", "GpuXidError", "21m",
             [xid(0, "0x19 stale"), xid(79, "_x20 79x10", namespace=None)],
             [fired(f"GPU 0 on {NODE} reported XID 79", severity="critical", **xid_labels(79, namespace=None))]),
        case("pod gone, same XID code kept under the exporter's labels", "GpuXidError", "25m",
             [xid(43, "43x19 stale"), xid(43, "_x20 43x10", namespace=None)], []),
        case("an old, unchanged XID code and a clean GPU", "GpuXidError", "25m",
             [xid(43, "43x30"), xid(0, "0x30", gpu=1, namespace=None)], []),
        case("GPU hot for 10 minutes", "GpuTemperatureHigh", "15m", [dcgm("DCGM_FI_DEV_GPU_TEMP", "90x20")],
             [fired(f"GPU 0 on {NODE} at 90 C", severity="warning", **gpu, team="vision")]),
        case("GPU below the threshold, or hot only 5 minutes", "GpuTemperatureHigh", "15m",
             [dcgm("DCGM_FI_DEV_GPU_TEMP", "84x20"), dcgm("DCGM_FI_DEV_GPU_TEMP", "70x5 90x5 70x10", gpu=1, namespace=None)], []),
        case("GPU memory 97.8% used", "GpuMemoryNearlyFull", "20m",
             [dcgm("DCGM_FI_DEV_FB_USED", "22000x20"), dcgm("DCGM_FI_DEV_FB_FREE", "500x20")],
             [fired(f"GPU 0 memory 97.78% full (team-vision/{TRAINER_POD})", severity="warning", **gpu, team="vision")]),
        case("GPU memory 88.9% used", "GpuMemoryNearlyFull", "20m",
             [dcgm("DCGM_FI_DEV_FB_USED", "20000x20"), dcgm("DCGM_FI_DEV_FB_FREE", "2500x20")], []),
        case("team pod's GPU idle for 2h", "GpuAllocatedButIdle", "125m", [dcgm("DCGM_FI_DEV_GPU_UTIL", "2x150")],
             [fired(f"GPU held by team-vision/{TRAINER_POD} idle for 2h", severity="warning", **gpu, team="vision")]),
        case("spare GPU idle, busy GPU, GPU idle only 99m", "GpuAllocatedButIdle", "125m", [
            dcgm("DCGM_FI_DEV_GPU_UTIL", "0x150", gpu=1, namespace=None),
            dcgm("DCGM_FI_DEV_GPU_UTIL", "50x150"),
            dcgm("DCGM_FI_DEV_GPU_UTIL", "80x25 2x125", gpu=2, pod="resnet-sweep-0-q8w2e"),
        ], []),
        case("dev environment idle 2h (its own timeout applies)", "GpuAllocatedButIdle", "125m", [
            *dev_environment("team-vision", "bob-7wq2n", "bob", idle_timeout=8 * 3600),
            dcgm("DCGM_FI_DEV_GPU_UTIL", "0x150", pod="bob-7wq2n", container="jupyter"),
        ], []),
    ]


EXPORTER_TARGET = {"container": "exporter", "endpoint": "metrics", "instance": "10.40.1.23:9400", "job": "dcgm-exporter",
                   "namespace": "cloudml-system", "pod": "dcgm-exporter-9xk2m", "service": "dcgm-exporter"}


def exporter_and_node_cases() -> list[dict]:
    up = series("up", EXPORTER_TARGET)
    return [
        case("dcgm-exporter scrape failing", "DcgmExporterDown", "6m", [{"series": up, "values": "0x10"}],
             [fired("dcgm-exporter target 10.40.1.23:9400 is down", severity="warning", **EXPORTER_TARGET)]),
        case("dcgm-exporter scraped", "DcgmExporterDown", "6m", [{"series": up, "values": "1x10"}], []),
        case("GPU node (by label) and GPU node (by allocatable) without GPU metrics", "DcgmExporterAbsentOnGpuNode", "20m", [
            *node_series(NODE_2, "a10g"), *node_series("ip-10-40-3-9.us-west-2.compute.internal", None, gpus="4x30"),
            dcgm("DCGM_FI_DEV_GPU_UTIL", "50x30"),  # from NODE only
        ], [
            fired(f"No GPU metrics from GPU node {NODE_2}", severity="warning", node=NODE_2, pool="a10g"),
            fired("No GPU metrics from GPU node ip-10-40-3-9.us-west-2.compute.internal", severity="warning",
                  node="ip-10-40-3-9.us-west-2.compute.internal"),
        ]),
        case("GPU node reporting (Hostname or hostname), GPU node not Ready, CPU node", "DcgmExporterAbsentOnGpuNode", "20m", [
            *node_series(NODE, "a10g"), *node_series(NODE_2, "l4-spot"),
            *node_series("ip-10-40-3-9.us-west-2.compute.internal", "a10g", ready="0x30"),
            *node_series("ip-10-40-0-5.us-west-2.compute.internal", None),
            dcgm("DCGM_FI_DEV_GPU_UTIL", "50x30"),
            dcgm("DCGM_FI_DEV_GPU_UTIL", "50x30", node=NODE_2, node_label="hostname"),
        ], []),
        case("GPU node not Ready for 10 minutes", "GpuNodeNotReady", "12m", node_series(NODE_2, "a10g", ready="0x15"),
             [fired(f"GPU node {NODE_2} is not Ready", severity="critical", node=NODE_2, pool="a10g")]),
        case("CPU node not Ready, GPU node Ready", "GpuNodeNotReady", "12m",
             [*node_series("ip-10-40-0-5.us-west-2.compute.internal", None, ready="0x15"), *node_series(NODE_2, "a10g")], []),
    ]


def capacity_cases() -> list[dict]:
    pod = {"namespace": "team-vision", "pod": "resnet-dist-worker-0-0-abcde", "uid": "uid-worker-0"}
    waiting = [
        ksm("kube_pod_container_resource_requests", "4x20", **pod, container="trainer", resource="nvidia_com_gpu", unit="integer"),
        ksm("kube_pod_status_phase", "1x20", **pod, phase="Pending"),
    ]
    cpu_pod = {"namespace": "team-nlp", "pod": "prep-7k2x9", "uid": "uid-prep"}
    pool = [ksm("kube_node_labels", "1x40", node=f"ip-10-40-1-{i}.us-west-2.compute.internal",
                label_cloudml_io_pool="a10g", label_cloudml_io_gpu_type="a10g") for i in range(4)]
    spot = [ksm("kube_node_labels", "1x40", node=f"ip-10-40-2-{i}.us-west-2.compute.internal",
                label_cloudml_io_pool="l4-spot", label_cloudml_io_gpu_type="l4") for i in range(7)]
    return [
        case("GPU pod unschedulable for 15 minutes", "GpuPodsPendingNoCapacity", "16m",
             [*waiting, ksm("kube_pod_status_unschedulable", "1x20", **pod)],
             [fired(f"Pod team-vision/{pod['pod']} waits for 4 GPU(s)", severity="warning",
                    namespace="team-vision", pod=pod["pod"], team="vision")]),
        case("GPU pod scheduled (pulling its image); CPU pod unschedulable", "GpuPodsPendingNoCapacity", "16m", [
            *waiting,
            ksm("kube_pod_container_resource_requests", "2x20", **cpu_pod, container="prep", resource="cpu", unit="core"),
            ksm("kube_pod_status_phase", "1x20", **cpu_pod, phase="Pending"),
            ksm("kube_pod_status_unschedulable", "1x20", **cpu_pod),
        ], []),
        case("pool a10g at its max of 4 for 30 minutes", "NodePoolAtMaxSize", "35m", pool,
             [fired("GPU pool a10g at its maximum of 4 nodes", severity="warning", pool="a10g")]),
        case("pools below their max", "NodePoolAtMaxSize", "35m", pool[:3] + spot, []),
    ]


def quota(namespace: str, used: str, hard: str) -> list[dict]:
    labels = {"namespace": namespace, "resourcequota": "gpu-quota", "resource": "requests.nvidia.com/gpu"}
    return [ksm("kube_resourcequota", used, **labels, type="used"), ksm("kube_resourcequota", hard, **labels, type="hard")]


def workload_cases() -> list[dict]:
    job = {"namespace": "team-vision", "job_name": "resnet-dist-worker-0"}
    workers = [f"resnet-dist-worker-0-{i}-{s}" for i, s in ((0, "abcde"), (1, "fghij"))]
    owners = [ksm("kube_pod_owner", "1x60", namespace="team-vision", pod=p, uid=f"uid-{p}", owner_kind="Job",
                  owner_name=job["job_name"], owner_is_controller="true") for p in workers]
    active = ksm("kube_job_status_active", "2x60", **job)
    dev_pod = "alice-4kq9z"
    dev = dev_environment("team-vision", dev_pod, "alice", idle_timeout=7200)  # the default 2h
    long_pod = "bob-7wq2n"
    long_dev = dev_environment("team-vision", long_pod, "bob", idle_timeout=8 * 3600)
    failed = {"namespace": "team-vision", "job_name": "resnet-baseline-29012345"}
    serving = model_service_target("team-vision", SERVICE_POD, "resnet")
    labels = pod_labels("team-vision", SERVICE_POD, "resnet", "modelService")

    def requests(ok: str, errors: str) -> list[dict]:
        return [{"series": series(":tensorflow:serving:request_count", {**serving, "model_name": "resnet", "status": "OK"}), "values": ok},
                {"series": series(":tensorflow:serving:request_count", {**serving, "model_name": "resnet", "status": "UNAVAILABLE"}),
                 "values": errors}]

    def latency(slow: bool) -> list[dict]:
        bounds = {"708235": "0x30", "1.27482e+06": "0x30", "2.29468e+06": "0+60x30", "+Inf": "0+60x30"} if slow else \
            {"708235": "0+60x30", "1.27482e+06": "0+60x30", "2.29468e+06": "0+60x30", "+Inf": "0+60x30"}
        return [{"series": series(":tensorflow:serving:request_latency_bucket",
                                  {**serving, "model_name": "resnet", "API": "predict", "entrypoint": "REST", "le": le}),
                 "values": values} for le, values in bounds.items()]

    return [
        case("team at 100% of its GPU quota", "TeamNearGpuQuota", "16m", quota("team-nlp", "8x20", "8x20"),
             [fired("Team nlp uses 100% of its GPU quota", severity="warning", namespace="team-nlp", team="nlp",
                    resourcequota="gpu-quota", resource="requests.nvidia.com/gpu", **KSM)]),
        case("team at 87.5% of its quota; team with quota 0", "TeamNearGpuQuota", "16m",
             quota("team-nlp", "7x20", "8x20") + quota("team-vision", "0x20", "0x20"), []),
        case("Job failed", "TrainingJobFailed", "1m", [ksm("kube_job_failed", "1x5", **failed, condition="true")],
             [fired(f"Job team-vision/{failed['job_name']} failed", severity="warning", **failed, **KSM, condition="true", team="vision")]),
        case("Job not failed", "TrainingJobFailed", "1m", [ksm("kube_job_failed", "0x5", **failed, condition="true"),
                                                          ksm("kube_job_failed", "1x5", **failed, condition="false")], []),
        case("running Job whose GPUs are idle for 30 minutes", "TrainingJobStalled", "35m",
             [*owners, active, *(dcgm("DCGM_FI_DEV_GPU_UTIL", "0x60", gpu=i, pod=p) for i, p in enumerate(workers))],
             [fired(f"Job team-vision/{job['job_name']} has not used its GPUs for 30 minutes", severity="warning", **job, team="vision")]),
        case("one worker busy; idle dev environment (a Job too)", "TrainingJobStalled", "35m", [
            *owners, active, dcgm("DCGM_FI_DEV_GPU_UTIL", "0x60", gpu=0, pod=workers[0]),
            dcgm("DCGM_FI_DEV_GPU_UTIL", "80x60", gpu=1, pod=workers[1]), *dev,
            dcgm("DCGM_FI_DEV_GPU_UTIL", "0x60", gpu=2, pod=dev_pod, container="jupyter"),
        ], []),
        case("model service failing 10% of requests", "ModelServiceErrorRate", "20m", [labels, *requests("0+540x30", "0+60x30")],
             [fired("Model service team-vision/resnet fails 10% of requests", severity="critical", **TEAM, workload="resnet")]),
        case("model service failing 1.7% of requests", "ModelServiceErrorRate", "20m", [labels, *requests("0+590x30", "0+10x30")], []),
        case("model service p99 latency 2.28 s", "ModelServiceLatencyHigh", "20m", [labels, *latency(slow=True)],
             [fired("Model service team-vision/resnet p99 latency 2.284s", severity="warning", **TEAM, workload="resnet")]),
        case("model service p99 latency 0.7 s", "ModelServiceLatencyHigh", "20m", [labels, *latency(slow=False)], []),
        case("2h dev environment's GPU idle for 3h05m (timeout + 1h passed)", "DevEnvironmentIdlePastTimeout", "185m",
             [*dev, dcgm("DCGM_FI_DEV_GPU_UTIL", "0x200", pod=dev_pod, container="jupyter")],
             [fired("Dev environment team-vision/alice idle for 3h 5m 0s and still running", severity="warning", **TEAM,
                    pod=dev_pod, workload="alice")]),
        case("2h environment idle 2h50m; 8h environment idle 3h05m; training pod idle 3h", "DevEnvironmentIdlePastTimeout", "185m", [
            *dev, dcgm("DCGM_FI_DEV_GPU_UTIL", "50x15 0x185", pod=dev_pod, container="jupyter"),
            *long_dev, dcgm("DCGM_FI_DEV_GPU_UTIL", "0x200", gpu=2, pod=long_pod, container="jupyter"),
            pod_labels("team-vision", TRAINER_POD, "resnet-baseline", "training"), dcgm("DCGM_FI_DEV_GPU_UTIL", "0x200", gpu=1),
        ], []),
    ]


def all_cases() -> list[dict]:
    return gpu_cases() + exporter_and_node_cases() + capacity_cases() + workload_cases()
