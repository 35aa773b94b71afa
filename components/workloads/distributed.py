"""kind: distributedTraining — distributed TensorFlow as one JobSet (jobset.x-k8s.io/v1alpha2).

One replicated job per TensorFlow task type (chief, worker, ps, evaluator), each a single Indexed
Job with one pod per task. Every pod gets the `TF_CONFIG` the Kubeflow TFJob controller would write,
built declaratively: the pod's completion index comes from the downward API into an env var, and
`TF_CONFIG` references it as `$(CLOUDML_TASK_INDEX)`, which the kubelet expands. No shell wrapper,
so it works with any image.
"""

from __future__ import annotations

import json
from typing import Any

from components.labels import GPU_RESOURCE
from components.render import WorkloadContext
from components.spec import DistributedTrainingWorkload, jobset_job_name
from components.workloads.common import field_env, run_env

TF_PORT = 2222
TF_PORT_NAME = "tf"
TF_TASK_LABEL = "cloudml.io/tf-task"
TASK_INDEX_ENV = "CLOUDML_TASK_INDEX"
# Set by the Job controller on every pod of an Indexed Job. The controller also adds
# JOB_COMPLETION_INDEX, but appends it after the container's own env, too late for TF_CONFIG to
# reference it: `$(VAR)` only expands variables defined earlier in the list.
# The JobSet API this version renders (the CRD in ../shared/crds and the chart pinned in versions.py).
JOBSET_API_VERSION = "jobset.x-k8s.io/v1alpha2"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# A run is one JobSet: its controller labels every pod with the JobSet's UID, which survives a
# restart of the group (the Jobs are recreated, the JobSet is not), so restarted pods find their
# checkpoints; a JobSet that `pulumi up` replaces gets a new UID and starts fresh.
JOBSET_UID_LABEL = "jobset.sigs.k8s.io/jobset-uid"
# TensorFlow and Kubeflow keep the evaluator out of `cluster`: it is not part of the training
# cluster (TFJob's genClusterSpec skips it; TensorFlow accepts task type evaluator without it).
NOT_IN_CLUSTER = ("evaluator",)
# The Job condition reason activeDeadlineSeconds produces (batch/v1 JobReasonDeadlineExceeded).
DEADLINE_EXCEEDED = "DeadlineExceeded"
_INDEX_PLACEHOLDER = "__cloudml_task_index__"


def values(context: WorkloadContext, shared: dict[str, Any]) -> dict[str, Any]:
    workload: DistributedTrainingWorkload = context.workload
    replicas = workload.replicas
    single_pod = sum(replicas.values()) == 1
    cluster = cluster_spec(shared["name"], replicas)
    common_env = run_env(context, run_id_label=JOBSET_UID_LABEL, model=workload.model_name) + shared["env"]
    jobs = []
    for task, count in replicas.items():
        # Kubeflow sets no TF_CONFIG for a job of one pod: plain local training.
        tf_env = [] if single_pod else task_env(task, cluster)
        jobs.append({
            "name": task,
            "count": count,
            # Without a chief, worker 0 is TensorFlow's chief: its success ends the Job (the
            # others are stopped) — Kubernetes Job successPolicy, beta and on by default in 1.31.
            "succeeded_indexes": "0" if task == "worker" and "chief" not in replicas else None,
            "v": task_values(shared, workload, task, tf_env + common_env, in_cluster=not single_pod and task in cluster),
        })
    return {
        **shared,
        "api_version": JOBSET_API_VERSION,
        "replicated_jobs": jobs,
        # The JobSet succeeds when TensorFlow's chief does (parameter servers never exit by themselves).
        "success_target": "chief" if "chief" in replicas else "worker",
        "deadline_reason": DEADLINE_EXCEEDED,
    }


def cluster_spec(jobset: str, replicas: dict[str, int]) -> dict[str, list[str]]:
    """TF_CONFIG's `cluster`: each task's stable JobSet hostname `<jobset>-<task>-0-<i>.<jobset>`
    (its Job's name and the pod's index; the JobSet's headless Service is its subdomain, named after it)."""
    return {
        task: [f"{jobset_job_name(jobset, task)}-{i}.{jobset}:{TF_PORT}" for i in range(count)]
        for task, count in replicas.items()
        if task not in NOT_IN_CLUSTER
    }


def task_env(task: str, cluster: dict[str, list[str]]) -> list[dict]:
    """The index var, then TF_CONFIG referencing it (order matters: see COMPLETION_INDEX_ANNOTATION)."""
    config = {"cluster": cluster, "task": {"type": task, "index": _INDEX_PLACEHOLDER}, "environment": "cloud"}
    text = json.dumps(config, separators=(",", ":"))
    # `$$` is the kubelet's escape for a literal `$`; then the index goes in unquoted, an int in JSON.
    text = text.replace("$", "$$").replace(f'"{_INDEX_PLACEHOLDER}"', f"$({TASK_INDEX_ENV})")
    return [
        field_env(TASK_INDEX_ENV, f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
        {"name": "TF_CONFIG", "value": text},
    ]


def task_values(shared: dict[str, Any], workload: DistributedTrainingWorkload, task: str, env: list[dict], in_cluster: bool) -> dict:
    """The shared values as one task type's pods need them: its own GPUs (none for parameter servers
    and the parameterServer chief, so they neither request nor wait for a GPU node), its label, its env."""
    v = {**shared, "labels": {**shared["labels"], TF_TASK_LABEL: task}, "env": env}
    if not workload.gpus_of(task):
        v["resources"] = {k: q for k, q in shared["resources"].items() if k != GPU_RESOURCE}
        v["gpus"] = 0
        v["gpu_type"] = None
    if in_cluster:
        v["ports"] = [{"name": TF_PORT_NAME, "containerPort": TF_PORT, "protocol": "TCP"}]
    return v
