"""The environment each pod of a rendered JobSet would get, computed as Kubernetes computes it.

`jobset_pods(jobset)` yields one `PodEnv` per pod the JobSet would create: the pod's metadata as the
JobSet and Job controllers set it (labels, the completion-index annotation, hostname, subdomain),
then the main container's environment the way the kubelet builds it — env entries in order, a
later entry replacing an earlier one of the same name, downward-API `fieldRef`s resolved from that
metadata, and `$(VAR)` in a plain value expanded from the entries before it (`expand`) — and the
parsed `TF_CONFIG` (None when the pod has none). Enough to start the real processes with exactly
that environment.

Sources: kubelet `makeEnvironmentVariables` and third_party/forked/golang/expansion (kubernetes);
the Job controller (Indexed Jobs: hostname `<job>-<index>`, the `batch.kubernetes.io/job-completion-index`
annotation and label, JOB_COMPLETION_INDEX appended after the container's own env); the JobSet
controller (Job name `<jobset>-<replicatedJob>-<jobIndex>`, its labels, subdomain = the JobSet name).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Iterator, Mapping

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOB_COMPLETION_INDEX_ENV = "JOB_COMPLETION_INDEX"
_MAP_FIELD = re.compile(r"metadata\.(labels|annotations)\['([^']*)'\]")


@dataclass(frozen=True)
class PodEnv:
    """One pod of the JobSet and its main container's final environment."""

    task: str  # the replicated job's name
    index: int  # the pod's completion index in its Job
    hostname: str
    subdomain: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    env: dict[str, str]  # final values, in definition order
    tf_config: dict | None

    @property
    def host(self) -> str:
        """The name peers reach this pod by: `<hostname>.<subdomain>`."""
        return f"{self.hostname}.{self.subdomain}" if self.subdomain else self.hostname


def expand(value: str, defined: Mapping[str, str]) -> str:
    """Expand `$(VAR)` as the kubelet does: a defined VAR becomes its value, an undefined one stays
    `$(VAR)`, `$$` is a literal `$`, any other `$` (or an unclosed `$(`) is kept as written."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(value):
        if value[cursor] == "$" and cursor + 1 < len(value):
            out.append(value[checkpoint:cursor])
            rest = value[cursor + 1:]
            if rest[0] == "$":
                out.append("$")
                advance = 1
            elif rest[0] == "(" and ")" in rest[1:]:
                name = rest[1:rest.index(")", 1)]
                out.append(defined[name] if name in defined else f"$({name})")
                advance = len(name) + 2
            elif rest[0] == "(":
                out.append("$(")
                advance = 1
            else:
                out.append("$" + rest[0])
                advance = 1
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    return "".join(out) + value[checkpoint:]


def container_env(env: list[dict], labels: Mapping[str, str], annotations: Mapping[str, str], pod_spec: Mapping,
                  namespace: str, secrets: Mapping[tuple[str, str], str] | None = None) -> dict[str, str]:
    """The final environment of a container with this `env` list in a pod with this metadata."""
    secrets = secrets or {}
    result: dict[str, str] = {}
    for entry in env:
        name = entry["name"]
        if entry.get("value"):
            result[name] = expand(entry["value"], result)
        elif "valueFrom" in entry:
            result[name] = _value_from(entry["valueFrom"], labels, annotations, pod_spec, namespace, secrets)
        else:
            result[name] = ""
    return result


def _value_from(source: Mapping, labels, annotations, pod_spec, namespace, secrets) -> str:
    if "fieldRef" in source:
        path = source["fieldRef"]["fieldPath"]
        match = _MAP_FIELD.fullmatch(path)
        if match:
            # The kubelet gives "" for a label or annotation the pod does not have.
            return (labels if match.group(1) == "labels" else annotations).get(match.group(2), "")
        if path == "metadata.namespace":
            return namespace
        if path == "spec.serviceAccountName":
            return pod_spec.get("serviceAccountName", "default")
        raise ValueError(f"fieldRef {path!r} is only known once the pod runs")
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        key = (ref["name"], ref["key"])
        if key not in secrets:
            # The kubelet refuses to start the container (CreateContainerConfigError).
            raise LookupError(f"secret {key[0]!r} key {key[1]!r} not given to jobset_pods(secrets=...)")
        return secrets[key]
    raise ValueError(f"env source {sorted(source)} not supported by this helper")


def _pod(template: dict, labels: dict, index: int, indexed: bool, container: str, namespace: str,
         secrets: Mapping[tuple[str, str], str] | None, task: str, hostname: str, subdomain: str | None) -> PodEnv:
    """One pod of a Job's `template` with the controller's `labels`: for an Indexed Job the completion
    index label and annotation (and JOB_COMPLETION_INDEX), then the container env as the kubelet
    builds it. A hostname or subdomain in the template wins over the controller's."""
    annotations = dict(template.get("metadata", {}).get("annotations", {}))
    if indexed:
        labels[COMPLETION_INDEX] = annotations[COMPLETION_INDEX] = str(index)
    (main,) = [c for c in template["spec"]["containers"] if c["name"] == container]
    env = list(main.get("env", []))
    if indexed and not any(e["name"] == JOB_COMPLETION_INDEX_ENV for e in env):
        env.append({"name": JOB_COMPLETION_INDEX_ENV,
                    "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{COMPLETION_INDEX}']"}}})
    values = container_env(env, labels, annotations, template["spec"], namespace, secrets)
    return PodEnv(
        task=task,
        index=index,
        hostname=template["spec"].get("hostname") or hostname,
        subdomain=template["spec"].get("subdomain") or subdomain,
        labels=labels,
        annotations=annotations,
        env=values,
        tf_config=json.loads(values["TF_CONFIG"]) if "TF_CONFIG" in values else None,
    )


def jobset_pods(jobset: dict, container: str = "main", secrets: Mapping[tuple[str, str], str] | None = None,
                restart_attempt: int = 0, jobset_uid: str = "0f1e2d3c-jobset-uid") -> Iterator[PodEnv]:
    """Every pod of `jobset` (a rendered JobSet object), with its environment. `jobset_uid` stands for
    the UID the API server gives the JobSet object (a new one when the JobSet is created again); the
    Jobs of each restart attempt get their own UIDs, as recreated objects do."""
    meta, spec = jobset["metadata"], jobset["spec"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    network = spec.get("network") or {}
    subdomain = (network.get("subdomain") or name) if network.get("enableDNSHostnames") else None
    for rjob in spec["replicatedJobs"]:
        job_spec = rjob["template"]["spec"]
        template = job_spec["template"]
        indexed = job_spec.get("completionMode") == "Indexed"
        for job_index in range(rjob.get("replicas", 1)):
            job_name = f"{name}-{rjob['name']}-{job_index}"
            for index in range(job_spec.get("completions", 1)):
                labels = {
                    **template.get("metadata", {}).get("labels", {}),
                    "jobset.sigs.k8s.io/jobset-name": name,
                    "jobset.sigs.k8s.io/jobset-uid": jobset_uid,
                    "jobset.sigs.k8s.io/replicatedjob-name": rjob["name"],
                    "jobset.sigs.k8s.io/replicatedjob-replicas": str(rjob.get("replicas", 1)),
                    "jobset.sigs.k8s.io/job-index": str(job_index),
                    "jobset.sigs.k8s.io/restart-attempt": str(restart_attempt),
                    "batch.kubernetes.io/job-name": job_name,
                    "batch.kubernetes.io/controller-uid": f"{job_name}-uid-attempt-{restart_attempt}",
                    "job-name": job_name,
                }
                yield _pod(template, labels, index, indexed, container, namespace, secrets, task=rjob["name"],
                           hostname=f"{job_name}-{index}" if indexed else job_name, subdomain=subdomain)


JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


def job_pods(job: dict, container: str = "main", secrets: Mapping[tuple[str, str], str] | None = None,
             job_uid: str = "0f1e2d3c-job-uid", namespace: str | None = None) -> Iterator[PodEnv]:
    """Every pod of `job` (a rendered batch/v1 Job, or a CronJob's jobTemplate wrapped as a Job),
    with its environment: the labels the Job controller adds (controller UID, job name, and for an
    Indexed Job the completion index label and annotation), then the container env as the kubelet
    builds it. `job_uid` stands for the UID the API server gives the Job."""
    meta, spec = job.get("metadata", {}), job["spec"]
    name = meta.get("name", "job")
    namespace = namespace or meta.get("namespace", "default")
    template = spec["template"]
    indexed = spec.get("completionMode") == "Indexed"
    for index in range(spec.get("completions", 1) if indexed else 1):
        labels = {
            **template.get("metadata", {}).get("labels", {}),
            JOB_UID_LABEL: job_uid,
            "batch.kubernetes.io/job-name": name,
            "controller-uid": job_uid,
            "job-name": name,
        }
        yield _pod(template, labels, index, indexed, container, namespace, secrets, task=name,
                   hostname=f"{name}-{index}" if indexed else name, subdomain=None)
