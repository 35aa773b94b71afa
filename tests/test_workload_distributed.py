"""kind: distributedTraining — the JobSet, field by field, and the TF_CONFIG every pod would see
(computed with tests/tf_config.py as the kubelet computes env), checked against TensorFlow's rules
(tensorflow/python/distribute/multi_worker_util.py) and the Kubeflow TFJob shape."""

from __future__ import annotations

import json

import pytest

from k8s_schema import schema_errors
from policies.pod_security import restricted_violations
from tf_config import container_env, expand, jobset_pods
from workload_fixtures import BUCKETS, VOLUME_CLAIMS, pod_templates, render_workload

MWMS = {"kind": "distributedTraining", "name": "resnet-dist", "command": ["python", "-m", "trainer"], "workers": 3, "gpusPerWorker": 2}
MWMS_CHIEF = {**MWMS, "name": "mw-chief", "chief": 1, "evaluator": 1}
PS = {"kind": "distributedTraining", "name": "bert-ps", "command": ["python", "-m", "trainer"], "strategy": "parameterServer",
      "chief": 1, "workers": 2, "ps": 2, "evaluator": 1, "gpusPerWorker": 1}
SINGLE = {**MWMS, "name": "solo", "workers": 1}
WORKER_AND_EVALUATOR = {**MWMS, "name": "pair", "workers": 1, "evaluator": 1}
CONFIGS = {"mwms": MWMS, "mwms-chief": MWMS_CHIEF, "ps": PS, "single": SINGLE, "worker-evaluator": WORKER_AND_EVALUATOR}


def jobset_of(workload: dict, **config) -> dict:
    (jobset,) = render_workload(workload, **config)
    assert jobset["kind"] == "JobSet" and jobset["apiVersion"] == "jobset.x-k8s.io/v1alpha2"
    return jobset


def jobs(jobset: dict) -> dict[str, dict]:
    """replicatedJob name -> its entry, in order."""
    return {rj["name"]: rj for rj in jobset["spec"]["replicatedJobs"]}


def main_container(pod_template: dict) -> dict:
    (main,) = pod_template["spec"]["containers"]
    return main


def tensorflow_problems(config: dict, strategy: str) -> list[str]:
    """What TensorFlow would refuse in this TF_CONFIG: the checks of multi_worker_util's
    `_validate_cluster_spec`, plus the strategies' own rules (ps only with ParameterServerStrategy,
    whose coordinator must be the chief; TF2 rejects `master`)."""
    cluster, task = config["cluster"], config["task"]
    allowed = ("chief", "worker", "ps", "evaluator")
    problems = [f"task type {job} not allowed" for job in cluster if job not in allowed]
    if task["type"] not in allowed:
        problems.append(f"unrecognized task type {task['type']}")
    if task["type"] not in cluster and task["type"] != "evaluator":
        problems.append(f"task type {task['type']} not in cluster")
    if len(cluster.get("chief", [])) > 1:
        problems.append("more than one chief")
    if len(cluster.get("evaluator", [])) > 1:
        problems.append("more than one evaluator")
    if not isinstance(task["index"], int) or isinstance(task["index"], bool):
        problems.append(f"index {task['index']!r} is not an int")
    elif task["type"] in cluster and not 0 <= task["index"] < len(cluster[task["type"]]):
        problems.append(f"index {task['index']} out of range for {task['type']}")
    if "ps" in cluster and strategy != "parameterServer":
        problems.append("ps without ParameterServerStrategy")
    if strategy == "parameterServer" and not (len(cluster.get("chief", [])) == 1 and cluster.get("ps") and cluster.get("worker")):
        problems.append("ParameterServerStrategy needs one chief (its coordinator), parameter servers and workers")
    return problems


def test_the_tensorflow_rule_checker_refuses_what_tensorflow_refuses():
    """The checker used below is not vacuous: each broken rule is reported."""
    def config(cluster, task_type, index):
        return {"cluster": cluster, "task": {"type": task_type, "index": index}, "environment": "cloud"}
    assert tensorflow_problems(config({"master": ["m:1"], "worker": ["w:1"]}, "worker", 0), "multiWorkerMirrored") == [
        "task type master not allowed"]
    assert tensorflow_problems(config({"chief": ["a:1", "b:1"]}, "chief", 0), "multiWorkerMirrored") == ["more than one chief"]
    assert tensorflow_problems(config({"worker": ["w:1"]}, "worker", 1), "multiWorkerMirrored") == ["index 1 out of range for worker"]
    assert tensorflow_problems(config({"worker": ["w:1"]}, "worker", "0"), "multiWorkerMirrored") == ["index '0' is not an int"]
    assert tensorflow_problems(config({"worker": ["w:1"]}, "chief", 0), "multiWorkerMirrored") == ["task type chief not in cluster"]
    assert tensorflow_problems(config({"worker": ["w:1"], "ps": ["p:1"]}, "worker", 0), "multiWorkerMirrored") == [
        "ps without ParameterServerStrategy"]
    assert tensorflow_problems(config({"worker": ["w:1"], "ps": ["p:1"]}, "worker", 0), "parameterServer") == [
        "ParameterServerStrategy needs one chief (its coordinator), parameter servers and workers"]
    assert tensorflow_problems(config({"worker": ["w:1"]}, "evaluator", 0), "multiWorkerMirrored") == []


# --- the JobSet ---------------------------------------------------------------------------------

def test_mwms_without_chief_has_one_worker_job_with_one_pod_per_worker():
    jobset = jobset_of(MWMS)
    assert jobset["metadata"]["name"] == "resnet-dist"
    assert [(name, rj["replicas"], rj["template"]["spec"]["completions"]) for name, rj in jobs(jobset).items()] == [("worker", 1, 3)]


def test_mwms_with_chief_and_evaluator_has_a_job_per_task_type_in_tf_order():
    jobset = jobset_of(MWMS_CHIEF)
    assert [(name, rj["replicas"], rj["template"]["spec"]["completions"]) for name, rj in jobs(jobset).items()] == [
        ("chief", 1, 1), ("worker", 1, 3), ("evaluator", 1, 1)]


def test_parameter_server_strategy_has_chief_worker_ps_and_evaluator_jobs():
    jobset = jobset_of(PS)
    assert [(name, rj["replicas"], rj["template"]["spec"]["completions"]) for name, rj in jobs(jobset).items()] == [
        ("chief", 1, 1), ("worker", 1, 2), ("ps", 1, 2), ("evaluator", 1, 1)]


@pytest.mark.parametrize("config", [MWMS, MWMS_CHIEF, PS], ids=["mwms", "mwms-chief", "ps"])
def test_every_job_is_indexed_runs_all_pods_at_once_and_fails_on_the_first_failed_pod(config):
    for name, rj in jobs(jobset_of(config)).items():
        spec = rj["template"]["spec"]
        assert spec["completionMode"] == "Indexed", name
        assert spec["parallelism"] == spec["completions"], name
        assert spec["backoffLimit"] == 0, name
        assert spec["template"]["spec"]["restartPolicy"] == "Never", name


def test_dns_hostnames_are_on_with_the_default_subdomain_the_jobset_name():
    network = jobset_of(PS)["spec"]["network"]
    assert network == {"enableDNSHostnames": True}


def test_success_is_the_chief_completing_when_there_is_a_chief():
    jobset = jobset_of(PS)
    assert jobset["spec"]["successPolicy"] == {"operator": "All", "targetReplicatedJobs": ["chief"]}
    assert all("successPolicy" not in rj["template"]["spec"] for rj in jobs(jobset).values())


def test_success_without_chief_is_worker_0_completing_via_the_job_success_policy():
    jobset = jobset_of(MWMS)
    assert jobset["spec"]["successPolicy"] == {"operator": "All", "targetReplicatedJobs": ["worker"]}
    assert jobs(jobset)["worker"]["template"]["spec"]["successPolicy"] == {"rules": [{"succeededIndexes": "0"}]}


def test_max_restarts_restart_the_whole_group_with_the_default_and_a_configured_value():
    assert jobset_of(MWMS)["spec"]["failurePolicy"] == {"maxRestarts": 3}
    assert jobset_of({**MWMS, "maxRestarts": 7})["spec"]["failurePolicy"] == {"maxRestarts": 7}


def test_active_deadline_is_on_every_job_and_reaching_it_fails_the_jobset_without_restarts():
    jobset = jobset_of({**PS, "activeDeadline": "2h"})
    assert [rj["template"]["spec"]["activeDeadlineSeconds"] for rj in jobs(jobset).values()] == [7200] * 4
    assert jobset["spec"]["failurePolicy"] == {
        "maxRestarts": 3,
        "rules": [{"name": "giveUpAtDeadline", "action": "FailJobSet", "onJobFailureReasons": ["DeadlineExceeded"]}],
    }


def test_without_active_deadline_no_job_has_one():
    assert all("activeDeadlineSeconds" not in rj["template"]["spec"] for rj in jobs(jobset_of(PS)).values())


def test_parameter_server_chief_and_ps_get_no_gpu_workers_and_evaluator_do():
    gpu_selector = {"cloudml.io/gpu-type": "a10g"}
    gpu_toleration = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    for name, rj in jobs(jobset_of(PS)).items():
        pod = rj["template"]["spec"]["template"]
        resources = main_container(pod)["resources"]
        if name in ("chief", "ps"):
            assert resources == {"requests": {"cpu": "2", "memory": "8Gi"}, "limits": {"cpu": "2", "memory": "8Gi"}}, name
            assert "nodeSelector" not in pod["spec"] and "tolerations" not in pod["spec"], name
        else:
            assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1", name
            assert pod["spec"]["nodeSelector"] == gpu_selector and pod["spec"]["tolerations"] == gpu_toleration, name


def test_multi_worker_mirrored_chief_gets_gpus_like_the_workers():
    for name, rj in jobs(jobset_of(MWMS_CHIEF)).items():
        assert main_container(rj["template"]["spec"]["template"])["resources"]["limits"]["nvidia.com/gpu"] == "2", name


def test_no_gpus_per_worker_means_no_gpu_anywhere():
    for name, rj in jobs(jobset_of({**MWMS_CHIEF, "gpusPerWorker": 0})).items():
        pod = rj["template"]["spec"]["template"]
        assert "nvidia.com/gpu" not in main_container(pod)["resources"]["limits"], name
        assert "nodeSelector" not in pod["spec"], name


def test_jobs_and_pods_carry_the_standard_labels_and_their_task_label():
    jobset = jobset_of({**PS, "labels": {"example.com/cost-center": "ml"}})
    standard = jobset["metadata"]["labels"]
    assert standard["cloudml.io/workload"] == "bert-ps" and standard["example.com/cost-center"] == "ml"
    assert "cloudml.io/tf-task" not in standard
    for name, rj in jobs(jobset).items():
        expected = {**standard, "cloudml.io/tf-task": name}
        assert rj["template"]["metadata"]["labels"] == expected
        assert rj["template"]["spec"]["template"]["metadata"]["labels"] == expected


def test_cluster_members_expose_the_tf_port_and_the_evaluator_does_not():
    for name, rj in jobs(jobset_of(PS)).items():
        ports = main_container(rj["template"]["spec"]["template"]).get("ports")
        assert ports == (None if name == "evaluator" else [{"name": "tf", "containerPort": 2222, "protocol": "TCP"}]), name


def test_command_volumes_and_secret_env_reach_every_task():
    """Shared values reach every task type's pod: command/args, the read-only bucket mount, secretEnv."""
    workload = {**PS, "args": ["--steps", "10"], "volumes": [{"source": "datasets", "mountPath": "/data"}],
                "secretEnv": {"WANDB_API_KEY": {"secret": "wandb", "key": "api-key"}}}
    jobset = jobset_of(workload, secrets={"wandb": {"api-key": "s3cr3t"}})
    for pod in pod_templates(jobset):
        main = main_container(pod)
        assert (main["command"], main["args"]) == (["python", "-m", "trainer"], ["--steps", "10"])
        assert main["volumeMounts"] == [{"name": "data-datasets", "mountPath": "/data", "readOnly": True}]
        assert pod["spec"]["volumes"] == [{"name": "data-datasets", "persistentVolumeClaim": {"claimName": VOLUME_CLAIMS["datasets"], "readOnly": True}}]
        assert main["env"][-1] == {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}}
    assert {p.env["WANDB_API_KEY"] for p in jobset_pods(jobset, secrets={("wandb", "api-key"): "s3cr3t"})} == {"s3cr3t"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_object_is_schema_valid_and_every_pod_restricted(name):
    objects = render_workload({**CONFIGS[name], "activeDeadline": "1h", "env": {"MODE": "x"}})
    for obj in objects:
        assert schema_errors(obj) == []
        for pod in pod_templates(obj):
            assert restricted_violations(pod["spec"]) == []


def test_pre_and_post_commands_wrap_the_command_of_every_task():
    jobset = jobset_of({**MWMS_CHIEF, "args": ["--x"], "preCommands": ["echo start"], "postCommands": ["echo done"]})
    for pod in pod_templates(jobset):
        main = main_container(pod)
        assert main["command"][:2] == ["/bin/sh", "-c"] and "echo start" in main["command"][2] and "echo done" in main["command"][2]
        assert main["args"] == ["python", "-m", "trainer", "--x"]


# --- TF_CONFIG, as each pod sees it -------------------------------------------------------------

@pytest.mark.parametrize("name", ["mwms", "mwms-chief", "ps", "worker-evaluator"])
def test_tf_config_of_every_pod_follows_tensorflows_rules_and_the_kubeflow_shape(name):
    workload = CONFIGS[name]
    strategy = workload.get("strategy", "multiWorkerMirrored")
    pods = list(jobset_pods(jobset_of(workload)))
    counts = {t: workload.get(k, 0) for t, k in (("chief", "chief"), ("worker", "workers"), ("ps", "ps"), ("evaluator", "evaluator"))}
    assert sorted((p.task, p.index) for p in pods) == sorted((t, i) for t, n in counts.items() for i in range(n))
    cluster = pods[0].tf_config["cluster"]
    # The evaluator is not part of the training cluster (Kubeflow leaves it out; TensorFlow allows that).
    assert cluster == {t: [f"{workload['name']}-{t}-0-{i}.{workload['name']}:2222" for i in range(n)]
                       for t, n in counts.items() if n and t != "evaluator"}
    for pod in pods:
        config = pod.tf_config
        assert list(config) == ["cluster", "task", "environment"] and config["environment"] == "cloud"
        assert config["task"] == {"type": pod.task, "index": pod.index}
        assert config["cluster"] == cluster
        assert tensorflow_problems(config, strategy) == []
        if pod.task != "evaluator":
            assert config["cluster"][pod.task][pod.index] == f"{pod.host}:2222"


def test_tf_config_env_is_compact_kubeflow_json_with_the_index_left_for_the_kubelet():
    (worker_job,) = jobs(jobset_of({**MWMS, "workers": 2})).values()
    env = main_container(worker_job["template"]["spec"]["template"])["env"]
    assert env[:2] == [
        {"name": "CLOUDML_TASK_INDEX",
         "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "TF_CONFIG",
         "value": '{"cluster":{"worker":["resnet-dist-worker-0-0.resnet-dist:2222","resnet-dist-worker-0-1.resnet-dist:2222"]},'
                  '"task":{"type":"worker","index":$(CLOUDML_TASK_INDEX)},"environment":"cloud"}'},
    ]


def test_a_single_pod_job_gets_no_tf_config():
    jobset = jobset_of(SINGLE)
    (pod,) = jobset_pods(jobset)
    assert pod.tf_config is None
    env = main_container(pod_templates(jobset)[0])["env"]
    assert [e["name"] for e in env if e["name"] in ("TF_CONFIG", "CLOUDML_TASK_INDEX")] == []
    assert "ports" not in main_container(pod_templates(jobset)[0])


def test_pod_hostnames_follow_the_jobset_naming_and_the_subdomain_is_the_jobset():
    pods = list(jobset_pods(jobset_of(PS)))
    assert [p.host for p in pods] == [f"bert-ps-{t}-0-{i}.bert-ps" for t, n in (("chief", 1), ("worker", 2), ("ps", 2), ("evaluator", 1))
                                      for i in range(n)]


def test_one_worker_with_an_evaluator_is_two_pods_and_gets_tf_config():
    pods = list(jobset_pods(jobset_of(WORKER_AND_EVALUATOR)))
    assert [(p.task, p.tf_config["task"]) for p in pods] == [("worker", {"type": "worker", "index": 0}),
                                                              ("evaluator", {"type": "evaluator", "index": 0})]


def test_env_order_index_then_tf_config_then_run_env_then_user_env():
    jobset = jobset_of({**MWMS, "env": {"MODE": "fast"}})
    names = [e["name"] for e in main_container(pod_templates(jobset)[0])["env"]]
    assert names == ["CLOUDML_TASK_INDEX", "TF_CONFIG", "CLOUDML_TEAM", "CLOUDML_WORKLOAD", "CLOUDML_RUN_ID",
                     "CLOUDML_CHECKPOINT_DIR", "CLOUDML_LOG_DIR", "CLOUDML_MODEL_DIR", "MODE"]


def test_the_index_var_agrees_with_the_job_controllers_own_index_var():
    for pod in jobset_pods(jobset_of(PS)):
        assert pod.env["CLOUDML_TASK_INDEX"] == pod.env["JOB_COMPLETION_INDEX"] == str(pod.index)


def test_every_pod_and_every_restart_share_one_checkpoint_dir_so_training_resumes():
    """All pods of all restart attempts of one JobSet (same UID) share the dirs: a restarted group resumes."""
    jobset = jobset_of({**PS, "model": "bert"})
    dirs = {(p.env["CLOUDML_CHECKPOINT_DIR"], p.env["CLOUDML_LOG_DIR"], p.env["CLOUDML_MODEL_DIR"])
            for attempt in (0, 1, 2) for p in jobset_pods(jobset, restart_attempt=attempt, jobset_uid="uid-1")}
    assert dirs == {(f"s3://{BUCKETS['checkpoints']}/vision/bert-ps/uid-1/", f"s3://{BUCKETS['logs']}/vision/bert-ps/uid-1/",
                     f"s3://{BUCKETS['models']}/vision/bert/")}


def test_a_jobset_created_again_starts_a_fresh_run_but_exports_to_the_same_model():
    """A JobSet that `pulumi up` replaces (same name, new UID) must not resume the finished run's checkpoints."""
    jobset = jobset_of({**PS, "model": "bert"})
    first = {p.env["CLOUDML_CHECKPOINT_DIR"] for p in jobset_pods(jobset, jobset_uid="uid-1")}
    second = {p.env["CLOUDML_CHECKPOINT_DIR"] for p in jobset_pods(jobset, jobset_uid="uid-2")}
    assert first.isdisjoint(second) and len(first) == len(second) == 1
    assert {p.env["CLOUDML_MODEL_DIR"] for p in jobset_pods(jobset, jobset_uid="uid-2")} == {f"s3://{BUCKETS['models']}/vision/bert/"}


# --- the $(VAR) expansion helper on its own ----------------------------------------------------

def test_expand_replaces_a_defined_var_and_leaves_an_undefined_one_as_written():
    assert expand("a-$(X)-$(Y)", {"X": "1"}) == "a-1-$(Y)"


def test_expand_double_dollar_is_a_literal_dollar_not_a_reference():
    assert expand("$$(X) costs $$5", {"X": "1"}) == "$(X) costs $5"


def test_expand_keeps_a_lone_dollar_and_an_unclosed_reference():
    assert expand("$a $(X", {"X": "1", "a": "no"}) == "$a $(X"
    assert expand("end$", {}) == "end$"


def test_container_env_sees_only_vars_defined_earlier_and_the_last_definition_wins():
    env = [{"name": "A", "value": "$(B)"}, {"name": "B", "value": "b"}, {"name": "C", "value": "$(B)$(A)"},
           {"name": "B", "value": "again"}]
    assert container_env(env, {}, {}, {}, "ns") == {"A": "$(B)", "B": "again", "C": "b$(B)"}


def test_container_env_resolves_downward_api_labels_and_annotations():
    env = [{"name": "I", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['idx']"}}},
           {"name": "L", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['missing']"}}},
           {"name": "J", "value": json.dumps({"index": 0}).replace("0", "$(I)")}]
    result = container_env(env, {}, {"idx": "4"}, {}, "ns")
    assert result == {"I": "4", "L": "", "J": '{"index": 4}'}
    assert json.loads(result["J"]) == {"index": 4}
