"""kind: training — one pod: a Job, or a CronJob when `schedule` is set."""

from __future__ import annotations

from typing import Any

from components.render import WorkloadContext
from components.spec import TrainingWorkload
from components.workloads.common import run_env


def values(context: WorkloadContext, shared: dict[str, Any]) -> dict[str, Any]:
    workload: TrainingWorkload = context.workload
    return {**shared, "env": run_env(context, model=workload.model_name) + shared["env"]}
