"""kind: devEnvironment — JupyterLab with TensorBoard beside it, stopped when idle.

The environment is a Job, not a Deployment, so that idling really releases its GPU: Jupyter shuts
itself down after `idleTimeout` without activity and exits 0, the Job completes, the pod ends and its
GPU goes back to the pool. A session that never goes idle (a busy kernel, a program left running in
a terminal) ends at `maxSessionDuration`, the Job's activeDeadlineSeconds. TensorBoard runs as a
native sidecar, so it stops with Jupyter. The home directory is an EFS PersistentVolumeClaim that
outlives the pod. This module also provides the Service exposure (ClusterIP or internal NLB) that
the tensorboard kind shares.
"""

from __future__ import annotations

from typing import Any

from components.labels import IDLE_TIMEOUT_LABEL
from components.render import RenderError, WorkloadContext, wrap_command
from components.spec import (
    DEV_TENSORBOARD_CPU,
    DEV_TENSORBOARD_MEMORY,
    KIND_RESERVED_PATHS,
    DevEnvironmentWorkload,
    home_claim_name,
    token_secret_name,
)
from components.workloads.common import service_exposure

HOME = KIND_RESERVED_PATHS["devEnvironment"]  # /home/cloudml: the contract keeps data mounts off it
HOME_VOLUME = "home"
JUPYTER_PORT = 8888
TENSORBOARD_PORT = 6006
# TensorBoard reads what the user writes here (e.g. tf.keras.callbacks.TensorBoard(log_dir=...)).
TENSORBOARD_LOGDIR = f"{HOME}/logs"
TENSORBOARD_RESOURCES = {"cpu": DEV_TENSORBOARD_CPU, "memory": DEV_TENSORBOARD_MEMORY}  # the quota check counts these
# How often Jupyter looks for idle kernels and terminals (never less often than the timeout itself).
CULL_INTERVAL_SECONDS = 60
# A crash restarts Jupyter in place (restartPolicy OnFailure) at most this many times.
CRASH_RESTARTS = 3
# Kubernetes deletes the finished Job after this long. Pulumi still believes it exists, so
# `pulumi up --refresh` notices it is gone and creates it again: that starts the environment anew
# (with the same home volume). Without a TTL the completed Job would stay and block a restart.
FINISHED_JOB_TTL_SECONDS = 300
# The Team component creates the Secret `<workload>-token` (key `token`) with a random value;
# Jupyter reads its token from JUPYTER_TOKEN, never from its command line.
TOKEN_SECRET_KEY = "token"
TOKEN_ENV = "JUPYTER_TOKEN"
IDLE_TIMEOUT_ENV = "CLOUDML_IDLE_TIMEOUT"

# Marks the pods an internal NLB sends traffic to, so a tenancy NetworkPolicy can admit the VPC's
# addresses to exactly these pods (cloudml.io/ is a prefix users cannot set on their own labels).
EXPOSE_LABEL = "cloudml.io/expose"




def jupyter_command(idle_timeout: int) -> list[str]:
    """JupyterLab on all interfaces with jupyter_server's idle shutdown.

    Kernels idle (and not busy) for `idle_timeout` are culled even with a browser tab attached;
    terminals inactive that long are culled (an open terminal would otherwise keep the server up);
    the server stops once it has had no kernels, no terminals and no API activity for `idle_timeout`.
    """
    interval = min(CULL_INTERVAL_SECONDS, idle_timeout)
    return [
        "jupyter", "lab",
        "--ip=0.0.0.0",
        f"--port={JUPYTER_PORT}",
        "--no-browser",
        f"--ServerApp.root_dir={HOME}",
        f"--ServerApp.shutdown_no_activity_timeout={idle_timeout}",
        f"--MappingKernelManager.cull_idle_timeout={idle_timeout}",
        f"--MappingKernelManager.cull_interval={interval}",
        "--MappingKernelManager.cull_connected=True",
        "--MappingKernelManager.cull_busy=False",
        f"--TerminalManager.cull_inactive_timeout={idle_timeout}",
        f"--TerminalManager.cull_interval={interval}",
    ]


def tool_service(shared: dict[str, Any], expose: str) -> dict[str, Any]:
    """The Service of an interactive tool: ClusterIP (port-forward) or an internal NLB."""
    return service_exposure(shared["annotations"], "internal" if expose == "internal" else None)


def exposed_labels(shared: dict[str, Any], expose: str) -> dict[str, str]:
    return {**shared["labels"], EXPOSE_LABEL: "internal"} if expose == "internal" else shared["labels"]


def values(context: WorkloadContext, shared: dict[str, Any]) -> dict[str, Any]:
    workload: DevEnvironmentWorkload = context.workload
    storage_class = context.platform.shared_storage_class
    if not storage_class:
        raise RenderError(f"workload {workload.name}: the platform has no shared file system for the home volume")
    image = workload.image or context.team.defaults.dev_image
    # Always JupyterLab with its idle shutdown: the contract refuses a command of the user's own and
    # args that would override cloudml's options; the user's args follow cloudml's.
    command, args = wrap_command(
        jupyter_command(workload.idle_timeout), workload.args, workload.pre_commands, workload.post_commands
    )
    home_mount = {"name": HOME_VOLUME, "mountPath": HOME}
    home_claim = home_claim_name(workload.name)
    # cloudml's variables come last so a user's env of the same name cannot replace the token.
    env = shared["env"] + [
        {"name": "HOME", "value": HOME},
        {"name": IDLE_TIMEOUT_ENV, "value": str(workload.idle_timeout)},
        {"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {"name": token_secret_name(workload.name), "key": TOKEN_SECRET_KEY}}},
    ]
    tensorboard = {
        "name": "tensorboard",
        "image": image,
        "command": ["tensorboard", "--logdir", TENSORBOARD_LOGDIR, "--host", "0.0.0.0", "--port", str(TENSORBOARD_PORT)],
        "ports": [{"name": "tensorboard", "containerPort": TENSORBOARD_PORT, "protocol": "TCP"}],
        # GPU images set NVIDIA_VISIBLE_DEVICES=all; on a GPU node the NVIDIA runtime would then hand
        # this GPU-less container every GPU of the node. `void` gives it none.
        "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}],
        "resources": {"requests": TENSORBOARD_RESOURCES, "limits": TENSORBOARD_RESOURCES},
        "volumeMounts": [{**home_mount, "readOnly": True}],
    }
    return {
        **shared,
        "image": image,
        "command": command,
        "args": args,
        "env": env,
        # The idle timeout as a label: kube-state-metrics exports it, the idle alert reads it.
        "labels": {**exposed_labels(shared, workload.expose), IDLE_TIMEOUT_LABEL: str(workload.idle_timeout)},
        "ports": [{"name": "http", "containerPort": JUPYTER_PORT, "protocol": "TCP"}],
        # /api answers without a token and does not count as activity, so probes never keep it awake.
        "readiness_probe": {"httpGet": {"path": "/api", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3},
        "pod_volumes": [{"name": HOME_VOLUME, "persistentVolumeClaim": {"claimName": home_claim}}, *shared["pod_volumes"]],
        "volume_mounts": [home_mount, *shared["volume_mounts"]],
        "sidecars": [tensorboard],
        "home_claim": home_claim,
        "home_size": workload.home_size,
        "storage_class": storage_class,
        "crash_restarts": CRASH_RESTARTS,
        # The backstop for a session that never goes idle: the Job fails (DeadlineExceeded), its pod
        # stops and the GPU is free; the finished Job is then deleted like a completed one.
        "active_deadline": workload.max_session_duration,
        "finished_ttl": FINISHED_JOB_TTL_SECONDS,
        # Named targetPorts of native sidecars reach no EndpointSlice before Kubernetes 1.32
        # (kubernetes#127958): the Service targets port numbers.
        "service_ports": [
            {"name": "http", "port": JUPYTER_PORT, "targetPort": JUPYTER_PORT, "protocol": "TCP"},
            {"name": "tensorboard", "port": TENSORBOARD_PORT, "targetPort": TENSORBOARD_PORT, "protocol": "TCP"},
        ],
        "service": tool_service(shared, workload.expose),
    }
