"""kind: batchPrediction — the trainer image's predict mode over an S3 prefix: a Job, or a CronJob
(concurrencyPolicy Forbid) when `schedule` is set.

Without a command of its own the container runs

    python -m cloudml_trainer predict --model-dir s3://<models>/<team>/<model>/
        --input s3://<bucket>/<team>/<input path>/ --output s3://<bucket>/<team>/<output path>/
        [--model-version <n>] <the workload's args>

and the same locations are in the environment (CLOUDML_MODEL_DIR, CLOUDML_INPUT, CLOUDML_OUTPUT,
CLOUDML_MODEL_VERSION when pinned) for a command of the user's own. Every location is under the
team's prefix, the only place its IAM role may read and write.
"""

from __future__ import annotations

from typing import Any

from components.render import WorkloadContext, bucket_uri, wrap_command
from components.spec import BatchPredictionWorkload, BucketPath
from components.workloads.common import JOB_UID_LABEL, RUN_ID_ENV, field_env

PREDICT_COMMAND = ["python", "-m", "cloudml_trainer", "predict"]


def path_uri(context: WorkloadContext, location: BucketPath) -> str:
    """`s3://<bucket>/<team>/<path>/` (a trailing '/' in the config's path is not doubled)."""
    return bucket_uri(context.platform, location.bucket, context.team.name, location.path.rstrip("/"))


def values(context: WorkloadContext, shared: dict[str, Any]) -> dict[str, Any]:
    workload: BatchPredictionWorkload = context.workload
    team = context.team.name
    model_dir = bucket_uri(context.platform, "models", team, workload.model)
    input_uri, output_uri = path_uri(context, workload.input), path_uri(context, workload.output)
    version = [] if workload.model_version is None else [str(workload.model_version)]
    env = [
        {"name": "CLOUDML_TEAM", "value": team},
        {"name": "CLOUDML_WORKLOAD", "value": workload.name},
        # The run's Job UID (see common.JOB_UID_LABEL): a CronJob's runs are told apart (e.g. to name
        # their output files), and a retried pod of the same run keeps it.
        field_env(RUN_ID_ENV, f"metadata.labels['{JOB_UID_LABEL}']"),
        {"name": "CLOUDML_MODEL_DIR", "value": model_dir},
        *[{"name": "CLOUDML_MODEL_VERSION", "value": v} for v in version],
        {"name": "CLOUDML_INPUT", "value": input_uri},
        {"name": "CLOUDML_OUTPUT", "value": output_uri},
    ]
    command, args = shared["command"], shared["args"]
    if not workload.command:
        predict_args = ["--model-dir", model_dir, "--input", input_uri, "--output", output_uri]
        predict_args += [arg for v in version for arg in ("--model-version", v)]
        command, args = wrap_command(PREDICT_COMMAND, predict_args + workload.args, workload.pre_commands, workload.post_commands)
    return {**shared, "command": command, "args": args, "env": env + shared["env"]}
