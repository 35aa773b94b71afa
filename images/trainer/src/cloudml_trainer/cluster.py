"""Who this process is in a distributed TensorFlow job, from TF_CONFIG, and the strategy that goes
with it. Parsing is pure Python (no TensorFlow import), so it is cheap to test.

TensorFlow's rules (tensorflow/python/distribute/multi_worker_util.py): task types chief, worker,
ps, evaluator; without a `chief` job, worker 0 is the chief; `ps` means ParameterServerStrategy,
whose coordinator is the chief; the evaluator is not part of `cluster` (a sidecar that evaluates
checkpoints). Kubeflow's TFJob (and cloudml's JobSet) set no TF_CONFIG for a one-pod job.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Mapping

LOCAL = "local"  # no cluster: the default strategy, or MirroredStrategy over several local GPUs
MULTI_WORKER = "multi_worker"  # MultiWorkerMirroredStrategy: workers (and an optional chief)
PARAMETER_SERVER = "parameter_server"  # ParameterServerStrategy: chief (coordinator) + ps + workers
EVALUATOR = "evaluator"  # the evaluator sidecar: evaluates checkpoints as they appear
TASK_TYPES = ("chief", "worker", "ps", "evaluator")


class ClusterError(ValueError):
    """TF_CONFIG that TensorFlow would refuse."""


@dataclass(frozen=True)
class Role:
    mode: str
    cluster: dict[str, list[str]] = field(default_factory=dict)
    task_type: str | None = None
    task_index: int = 0

    @property
    def is_chief(self) -> bool:
        """The task that keeps checkpoints, summaries, metrics and the export."""
        if self.mode == LOCAL:
            return True
        if self.task_type == "chief":
            return True
        return self.task_type == "worker" and self.task_index == 0 and "chief" not in self.cluster

    @property
    def name(self) -> str:
        return "local" if self.task_type is None else f"{self.task_type}-{self.task_index}"

    @property
    def runs_server_only(self) -> bool:
        """ParameterServerStrategy's ps and worker tasks only serve the coordinator's functions."""
        return self.mode == PARAMETER_SERVER and self.task_type in ("ps", "worker")


def role_from_env(environ: Mapping[str, str] | None = None) -> Role:
    environ = os.environ if environ is None else environ
    text = environ.get("TF_CONFIG", "").strip()
    if not text:
        return Role(LOCAL)
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ClusterError(f"TF_CONFIG is not JSON: {error}") from None
    return role_from_config(config)


def role_from_config(config: dict) -> Role:
    cluster = {job: list(tasks) for job, tasks in (config.get("cluster") or {}).items() if tasks}
    task = config.get("task") or {}
    task_type, index = task.get("type"), task.get("index", 0)
    unknown = sorted(set(cluster) - set(TASK_TYPES))
    if unknown:
        raise ClusterError(f"TF_CONFIG cluster has task types {unknown}; allowed: {list(TASK_TYPES)} ('master' is TF1 only)")
    if not cluster:
        return Role(LOCAL)
    if task_type not in TASK_TYPES:
        raise ClusterError(f"TF_CONFIG task type {task_type!r} is not one of {list(TASK_TYPES)}")
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ClusterError(f"TF_CONFIG task index {index!r} is not a non-negative integer")
    if len(cluster.get("chief", [])) > 1 or len(cluster.get("evaluator", [])) > 1:
        raise ClusterError("TF_CONFIG has more than one chief or evaluator")
    if task_type != "evaluator":
        if task_type not in cluster or index >= len(cluster[task_type]):
            raise ClusterError(f"TF_CONFIG task {task_type}:{index} is not in the cluster {sorted(cluster)}")
    if task_type == "evaluator":
        return Role(EVALUATOR, cluster, task_type, index)
    if "ps" in cluster:
        if "chief" not in cluster:
            raise ClusterError("ParameterServerStrategy needs a chief task (the coordinator)")
        return Role(PARAMETER_SERVER, cluster, task_type, index)
    if sum(len(tasks) for job, tasks in cluster.items() if job != "evaluator") == 1:
        return Role(LOCAL, cluster, task_type, index)  # a cluster of one is plain local training
    return Role(MULTI_WORKER, cluster, task_type, index)


def make_strategy(role: Role, devices: list[str] | None = None):
    """The tf.distribute strategy for a training role (TF_CONFIG must already be in the environment).

    Local training mirrors over `devices` when it names more than one (logical device names, e.g.
    "/cpu:0", "/cpu:1" after splitting the CPU into logical devices), else over every GPU when
    there are several; one device or none: the default strategy."""
    import tensorflow as tf

    if role.mode == LOCAL:
        if devices is not None:
            return tf.distribute.MirroredStrategy(devices) if len(devices) > 1 else tf.distribute.get_strategy()
        gpus = tf.config.list_physical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if devices is not None:
        raise ClusterError("devices are only chosen for local training; TF_CONFIG defines the cluster")
    if role.mode == MULTI_WORKER:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if role.mode == PARAMETER_SERVER:
        # TensorFlow's advice for the coordinator: fail RPCs to lost workers fast, so the
        # ClusterCoordinator reschedules their functions instead of waiting.
        os.environ.setdefault("GRPC_FAIL_FAST", "use_caller")
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        return tf.distribute.ParameterServerStrategy(resolver)
    raise ClusterError(f"no training strategy for role {role.mode}")


def serve_forever(role: Role) -> None:
    """A ParameterServerStrategy ps or worker task: start the gRPC server and wait; the coordinator
    (chief) runs everything. The JobSet ends these pods when the chief succeeds."""
    import tensorflow as tf

    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    server = tf.distribute.Server(
        resolver.cluster_spec(), job_name=resolver.task_type, task_index=resolver.task_id,
        protocol=resolver.rpc_layer or "grpc", start=True,
    )
    server.join()
