"""Values several workload kinds share: where a run keeps its checkpoints, logs and model, and how
a Service is exposed (ClusterIP or an NLB of the AWS Load Balancer Controller)."""

from __future__ import annotations

from typing import Any

from components.render import WorkloadContext, bucket_uri

# A run is one Job: the Job controller labels every pod with its Job's UID (Kubernetes 1.27+). It is
# the same for every retry of the Job's pod, so a retried pod resumes from its run's checkpoints, and
# new for a new Job — a CronJob's next run, or a Job that `pulumi up` replaces (changed template) or
# creates again after its TTL — so a new run starts fresh instead of "resuming" a finished one. (The
# Job's name would stay the same across all of those.)
JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
RUN_ID_ENV = "CLOUDML_RUN_ID"


def field_env(name: str, field_path: str) -> dict:
    """An env var from the downward API (a field of the pod itself)."""
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def run_env(context: WorkloadContext, run_id_label: str = JOB_UID_LABEL, model: str | None = None) -> list[dict]:
    """The env a training-like container gets: who it is, and where its outputs go.

    Every directory is under the team's own prefix of a platform bucket, the only place its IAM role
    may write. `$(CLOUDML_RUN_ID)` is expanded by the kubelet from the env var defined before it.
    """
    team, workload, platform = context.team.name, context.workload, context.platform
    run = f"$({RUN_ID_ENV})"
    env = [
        {"name": "CLOUDML_TEAM", "value": team},
        {"name": "CLOUDML_WORKLOAD", "value": workload.name},
        field_env(RUN_ID_ENV, f"metadata.labels['{run_id_label}']"),
        {"name": "CLOUDML_CHECKPOINT_DIR", "value": bucket_uri(platform, "checkpoints", team, workload.name, run)},
        {"name": "CLOUDML_LOG_DIR", "value": bucket_uri(platform, "logs", team, workload.name, run)},
    ]
    if model is not None:
        # The trainer exports to <CLOUDML_MODEL_DIR><version>/, the layout TF Serving loads.
        env.append({"name": "CLOUDML_MODEL_DIR", "value": bucket_uri(platform, "models", team, model)})
    return env


# AWS Load Balancer Controller: an NLB with the pods as IP targets. The platform's admission guard
# refuses a team LoadBalancer Service that is not explicitly internal unless the platform allows
# internet-facing ones; the scheme is always written out.
NLB_CLASS = "service.k8s.aws/nlb"
SCHEME_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-scheme"
NLB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
}


def service_exposure(user_annotations: dict[str, str], scheme: str | None, source_ranges: list[str] = ()) -> dict[str, Any]:
    """Type, annotations, class and source ranges of a workload's Service: ClusterIP when `scheme` is
    None, else an NLB of that scheme (`internal` or `internet-facing`). The load-balancer annotations
    come after the workload's own, so a workload annotation cannot change the scheme."""
    if scheme is None:
        return {"type": "ClusterIP", "annotations": dict(user_annotations), "load_balancer_class": None, "source_ranges": []}
    annotations = {**user_annotations, **NLB_ANNOTATIONS, SCHEME_ANNOTATION: scheme}
    return {"type": "LoadBalancer", "annotations": annotations, "load_balancer_class": NLB_CLASS,
            "source_ranges": list(source_ranges)}
