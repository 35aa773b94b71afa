"""kind: tensorboard — a TensorBoard Deployment and Service over another workload's logs.

Training-like workloads write their logs to `s3://<logs bucket>/<team>/<workload>/<run>/`
(components/workloads/common.py). The platform gives each team a read-only Mountpoint for S3 claim
of `<logs bucket>/<team>/`; mounted at /logs, `/logs/<logsFrom>` holds every run of that workload
(a sweep's too), and TensorBoard shows each run as its own.
"""

from __future__ import annotations

from typing import Any

from components.render import RenderError, WorkloadContext, wrap_command
from components.spec import KIND_RESERVED_PATHS, TensorboardWorkload
from components.workloads.dev_environment import TENSORBOARD_PORT, exposed_labels, tool_service

LOGS_MOUNT = KIND_RESERVED_PATHS["tensorboard"]  # /logs: the contract keeps data mounts off it
LOGS_VOLUME = "logs"
LOGS_SOURCE = "logs"  # the platform's volume source of the logs bucket


def tensorboard_command(logs_from: str) -> list[str]:
    return ["tensorboard", "--logdir", f"{LOGS_MOUNT}/{logs_from}", "--host", "0.0.0.0", "--port", str(TENSORBOARD_PORT)]


def values(context: WorkloadContext, shared: dict[str, Any]) -> dict[str, Any]:
    workload: TensorboardWorkload = context.workload
    claims = context.platform.teams[context.team.name].volumes
    if LOGS_SOURCE not in claims:
        raise RenderError(f"workload {workload.name}: the platform gives team {context.team.name} no logs volume to read")
    # The user's command replaces TensorBoard's; their args always follow (e.g. --samples_per_plugin).
    main = list(workload.command) if workload.command else tensorboard_command(workload.logs_from)
    command, args = wrap_command(main, workload.args, workload.pre_commands, workload.post_commands)
    return {
        **shared,
        "command": command,
        "args": args,
        "labels": exposed_labels(shared, workload.expose),
        "ports": [{"name": "tensorboard", "containerPort": TENSORBOARD_PORT, "protocol": "TCP"}],
        "readiness_probe": {"httpGet": {"path": "/", "port": "tensorboard"}, "periodSeconds": 10, "failureThreshold": 3},
        "pod_volumes": [
            {"name": LOGS_VOLUME, "persistentVolumeClaim": {"claimName": claims[LOGS_SOURCE], "readOnly": True}},
            *shared["pod_volumes"],
        ],
        "volume_mounts": [{"name": LOGS_VOLUME, "mountPath": LOGS_MOUNT, "readOnly": True}, *shared["volume_mounts"]],
        "service_ports": [{"name": "tensorboard", "port": TENSORBOARD_PORT, "targetPort": TENSORBOARD_PORT, "protocol": "TCP"}],
        "service": tool_service(shared, workload.expose),
    }
