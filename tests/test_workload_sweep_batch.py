"""The `sweep` and `batchPrediction` kinds, field by field: the trials a sweep computes (grid and
seeded random), the ConfigMap and Indexed Job it becomes and how a pod finds its own trial; the
Job or CronJob a batch prediction becomes and the predict command it runs. Every object is checked
against the Kubernetes 1.31 schema and every pod against Pod Security `restricted`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from components.render import RenderError, WorkloadContext, render
from components.spec import load_team
from components.workloads.sweep import grid_trials, random_trials
from k8s_schema import schema_errors
from policies.pod_security import restricted_violations
from test_workload_common import expand_env
from workload_fixtures import BUCKETS, IMAGE, by_kind, platform_view, pod_templates, render_workload

JOB_UID_FIELD = "metadata.labels['batch.kubernetes.io/controller-uid']"
INDEX_FIELD = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
SWEEP = {
    "kind": "sweep", "name": "lr", "command": ["python", "-m", "train"], "args": ["--epochs", "5"],
    "parameters": {"learning_rate": [0.1, 0.01], "batch_size": [128, 256]}, "parallelism": 2,
}
TRAINING = {"kind": "training", "name": "resnet-train", "model": "resnet", "command": ["python", "-m", "train"]}
PREDICT = {
    "kind": "batchPrediction", "name": "scores", "model": "resnet",
    "input": {"path": "scoring/incoming"}, "output": {"bucket": "logs", "path": "scoring/out"},
}


def checked(objects: list[dict]) -> list[dict]:
    """The objects, after asserting each validates and each pod passes Pod Security `restricted`."""
    for obj in objects:
        assert schema_errors(obj) == [], obj["metadata"]["name"]
        for pod in pod_templates(obj):
            assert restricted_violations(pod["spec"]) == [], obj["metadata"]["name"]
    return objects


def sweep(**fields) -> tuple[dict, dict]:
    kinds = by_kind(checked(render_workload({**SWEEP, **fields})))
    assert sorted(kinds) == ["ConfigMap", "Job"] and len(kinds["ConfigMap"]) == len(kinds["Job"]) == 1
    return kinds["ConfigMap"][0], kinds["Job"][0]


def predict(secrets: dict | None = None, **fields) -> dict:
    [obj] = checked(render_workload({**PREDICT, **fields}, others=[TRAINING], secrets=secrets or {}))
    return obj


def main_container(obj: dict) -> dict:
    [pod] = pod_templates(obj)
    return pod["spec"]["containers"][0]


# --- sweep: the trials ------------------------------------------------------------------------


def test_grid_is_every_combination_with_the_first_declared_parameter_varying_slowest():
    assert grid_trials({"zeta": [1, 2], "alpha": ["a", "b", "c"]}) == [
        {"zeta": 1, "alpha": "a"}, {"zeta": 1, "alpha": "b"}, {"zeta": 1, "alpha": "c"},
        {"zeta": 2, "alpha": "a"}, {"zeta": 2, "alpha": "b"}, {"zeta": 2, "alpha": "c"},
    ]


def test_random_trials_of_a_seed_are_pinned_so_a_seed_draws_the_same_trials_in_every_release():
    space = {"lr": [0.1, 0.03, 0.01], "optimizer": ["adam", "sgd"]}
    assert random_trials(space, 4, seed=7) == [
        {"lr": 0.03, "optimizer": "adam"}, {"lr": 0.1, "optimizer": "adam"},
        {"lr": 0.01, "optimizer": "adam"}, {"lr": 0.03, "optimizer": "sgd"},
    ]
    assert random_trials(space, 4, seed=8) == [
        {"lr": 0.1, "optimizer": "sgd"}, {"lr": 0.03, "optimizer": "adam"},
        {"lr": 0.1, "optimizer": "adam"}, {"lr": 0.03, "optimizer": "sgd"},
    ]


def test_random_trials_never_repeat_a_combination_while_unseen_ones_remain():
    space = {"a": [1, 2, 3], "b": ["x", "y", "z"], "c": [True, False]}  # 18 combinations
    every = sorted(json.dumps(t) for t in grid_trials(space))
    for seed in range(20):
        trials = [json.dumps(t) for t in random_trials(space, 24, seed)]
        assert sorted(trials[:18]) == every, seed  # the first 18 are the whole grid
        assert set(trials[18:]) <= set(every), seed  # then combinations repeat


def test_random_trials_tell_equal_values_of_different_types_apart():
    """1, 1.0 and true compare equal in Python but are three values to try."""
    trials = random_trials({"x": [1, 1.0, True]}, 3, seed=0)
    assert sorted(json.dumps(t) for t in trials) == ['{"x": 1.0}', '{"x": 1}', '{"x": true}']


# --- sweep: the ConfigMap and the Indexed Job -------------------------------------------------


def test_sweep_configmap_holds_one_compact_json_file_per_trial_by_index():
    config_map, _ = sweep()
    assert config_map["metadata"]["name"] == "lr-trials"
    assert config_map["metadata"]["namespace"] == "ns-of-vision"
    assert config_map["metadata"]["labels"]["cloudml.io/workload"] == "lr"
    assert config_map["data"] == {
        "0.json": '{"learning_rate":0.1,"batch_size":128}',
        "1.json": '{"learning_rate":0.1,"batch_size":256}',
        "2.json": '{"learning_rate":0.01,"batch_size":128}',
        "3.json": '{"learning_rate":0.01,"batch_size":256}',
    }


def test_the_size_the_contract_limits_is_the_rendered_config_maps_data():
    """trials_config_bytes (refused above 1,000,000 bytes: test_spec_workloads.py) counts exactly the
    UTF-8 bytes of the keys and values the ConfigMap is rendered with."""
    from components.workloads.sweep import trials_config_bytes

    fields = {"parameters": {"note": ["é" * 40, "x"], "lr": [0.1, 0.01]}}
    config_map, _ = sweep(**fields)
    spec = load_team({"name": "vision", "platformStack": "org/cloudml/platform-x", "defaults": {"image": IMAGE},
                      "workloads": [{**SWEEP, **fields}]})
    rendered = sum(len(k.encode()) + len(v.encode()) for k, v in config_map["data"].items())
    # Keys 0.json..3.json; values {"note":"<é as \u00e9: 240 bytes>","lr":0.1} (260 and, with 0.01, 261 bytes),
    # then {"note":"x","lr":0.1} (21 and 22 bytes).
    assert trials_config_bytes(spec.workloads[0]) == rendered == 4 * 6 + 260 + 261 + 21 + 22


def test_sweep_trial_values_keep_their_types_in_the_json():
    config_map, _ = sweep(parameters={"v": [3, 3.0, True, "3", "é"]})
    assert [json.loads(config_map["data"][f"{i}.json"])["v"] for i in range(5)] == [3, 3.0, True, "3", "é"]
    assert [type(json.loads(config_map["data"][f"{i}.json"])["v"]) for i in range(5)] == [int, float, bool, str, str]


def test_sweep_is_one_indexed_job_with_per_trial_retries_and_tolerated_failures():
    _, job = sweep(retriesPerTrial=3, maxFailedTrials=1)
    spec = job["spec"]
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == ("batch/v1", "Job", "lr")
    assert {k: v for k, v in spec.items() if k != "template"} == {
        "completionMode": "Indexed",
        "completions": 4,
        "parallelism": 2,
        "backoffLimitPerIndex": 3,
        "maxFailedIndexes": 1,
        # A pod evicted by a drain or spot reclaim is replaced without using up a retry.
        "podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]},
    }
    assert spec["template"]["spec"]["restartPolicy"] == "Never"  # backoffLimitPerIndex requires it


def test_sweep_defaults_retry_each_trial_once_and_tolerate_no_failed_trial():
    _, job = sweep()
    assert (job["spec"]["backoffLimitPerIndex"], job["spec"]["maxFailedIndexes"]) == (1, 0)
    assert "backoffLimit" not in job["spec"]  # Kubernetes defaults it to MaxInt32 with per-index limits


def test_random_sweep_runs_its_number_of_trials_drawn_from_its_seed():
    config_map, job = sweep(algorithm="random", trials=3, seed=7, parameters={"lr": [0.1, 0.03, 0.01], "optimizer": ["adam", "sgd"]})
    assert job["spec"]["completions"] == 3
    assert config_map["data"] == {
        "0.json": '{"lr":0.03,"optimizer":"adam"}', "1.json": '{"lr":0.1,"optimizer":"adam"}', "2.json": '{"lr":0.01,"optimizer":"adam"}',
    }


def test_sweep_env_exact_list_and_user_env_after_it():
    _, job = sweep(env={"TF_CPP_MIN_LOG_LEVEL": "1"})
    assert main_container(job)["env"] == [
        {"name": "CLOUDML_TRIAL_INDEX", "valueFrom": {"fieldRef": {"fieldPath": INDEX_FIELD}}},
        {"name": "CLOUDML_TRIAL_PARAMS", "value": "/cloudml/trial/$(CLOUDML_TRIAL_INDEX).json"},
        {"name": "CLOUDML_METRICS_DIR", "value": f"s3://{BUCKETS['logs']}/vision/sweeps/lr/"},
        {"name": "CLOUDML_TEAM", "value": "vision"},
        {"name": "CLOUDML_WORKLOAD", "value": "lr"},
        {"name": "CLOUDML_RUN_ID", "valueFrom": {"fieldRef": {"fieldPath": JOB_UID_FIELD}}},
        {"name": "CLOUDML_CHECKPOINT_DIR", "value": f"s3://{BUCKETS['checkpoints']}/vision/lr/$(CLOUDML_RUN_ID)/trial-$(CLOUDML_TRIAL_INDEX)/"},
        {"name": "CLOUDML_LOG_DIR", "value": f"s3://{BUCKETS['logs']}/vision/lr/$(CLOUDML_RUN_ID)/trial-$(CLOUDML_TRIAL_INDEX)/"},
        {"name": "TF_CPP_MIN_LOG_LEVEL", "value": "1"},
    ]


def test_each_trial_pod_reads_its_own_parameters_and_writes_to_its_own_directories():
    """Expanded as the kubelet does for the pod of index 2: its params file is in the mounted ConfigMap."""
    config_map, job = sweep()
    container = main_container(job)
    env = expand_env(container["env"], {INDEX_FIELD: "2", JOB_UID_FIELD: "7d1c2e3f-uid"})
    assert env["CLOUDML_TRIAL_PARAMS"] == "/cloudml/trial/2.json"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/cloudml/trial")
    [volume] = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert json.loads(config_map["data"]["2.json"]) == {"learning_rate": 0.01, "batch_size": 128}
    assert env["CLOUDML_CHECKPOINT_DIR"] == f"s3://{BUCKETS['checkpoints']}/vision/lr/7d1c2e3f-uid/trial-2/"
    assert env["CLOUDML_LOG_DIR"] == f"s3://{BUCKETS['logs']}/vision/lr/7d1c2e3f-uid/trial-2/"


def test_sweep_mounts_its_data_volumes_and_the_trials_read_only():
    _, job = sweep(volumes=[{"source": "datasets", "mountPath": "/data", "subPath": "imagenet"}])
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "data-datasets", "persistentVolumeClaim": {"claimName": "claim-datasets", "readOnly": True}},
        {"name": "trials", "configMap": {"name": "lr-trials"}},
    ]
    assert pod["containers"][0]["volumeMounts"] == [
        {"name": "data-datasets", "mountPath": "/data", "readOnly": True, "subPath": "imagenet"},
        {"name": "trials", "mountPath": "/cloudml/trial", "readOnly": True},
    ]


def test_sweep_gpu_trials_select_the_pool_tolerate_the_taint_and_limit_equal_requests():
    _, job = sweep(gpus=2, gpuType="l4")
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloudml.io/gpu-type": "l4"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    resources = pod["containers"][0]["resources"]
    assert resources["limits"] == resources["requests"] == {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "2"}


def test_sweep_runs_the_users_command_wrapped_with_pre_and_post_commands():
    _, job = sweep(preCommands=["mkdir -p /tmp/x"], postCommands=["echo done"])
    container = main_container(job)
    assert container["command"][:2] == ["/bin/sh", "-c"] and "mkdir -p /tmp/x" in container["command"][2]
    assert container["args"] == ["python", "-m", "train", "--epochs", "5"]
    assert container["image"] == IMAGE


def test_changed_trials_change_the_pod_template_so_the_job_is_replaced_not_mixed():
    _, job = sweep(annotations={"example.com/owner": "vision"})
    _, same = sweep(annotations={"example.com/owner": "vision"})
    _, other = sweep(annotations={"example.com/owner": "vision"}, parameters={"learning_rate": [0.1, 0.02], "batch_size": [128, 256]})
    annotations = job["spec"]["template"]["metadata"]["annotations"]
    assert sorted(annotations) == ["cloudml.io/trials-sha256", "example.com/owner"]
    assert annotations["example.com/owner"] == "vision" and len(annotations["cloudml.io/trials-sha256"]) == 64
    assert job["metadata"]["annotations"] == {"example.com/owner": "vision"}
    assert annotations == same["spec"]["template"]["metadata"]["annotations"]
    assert annotations["cloudml.io/trials-sha256"] != other["spec"]["template"]["metadata"]["annotations"]["cloudml.io/trials-sha256"]


def test_sweep_parameter_that_is_not_a_finite_number_is_refused():
    """NaN has no JSON form for the trials ConfigMap: the contract refuses it before rendering, and the
    renderer would refuse it too if it ever got one (defence in depth)."""
    from components.errors import ConfigError
    from components.workloads.sweep import trial_file

    with pytest.raises(ConfigError, match="list a NaN or infinite value"):
        render_workload({**SWEEP, "parameters": {"lr": [0.1, float("nan")]}})
    with pytest.raises(RenderError, match="as JSON"):
        trial_file({"lr": float("nan")})


# --- batchPrediction --------------------------------------------------------------------------


def test_batch_prediction_is_a_job_running_the_trainers_predict_mode():
    job = predict()
    assert (job["apiVersion"], job["kind"], job["metadata"]["name"]) == ("batch/v1", "Job", "scores")
    container = main_container(job)
    assert container["image"] == IMAGE
    assert container["command"] == ["python", "-m", "cloudml_trainer", "predict"]
    assert container["args"] == [
        "--model-dir", f"s3://{BUCKETS['models']}/vision/resnet/",
        "--input", f"s3://{BUCKETS['datasets']}/vision/scoring/incoming/",
        "--output", f"s3://{BUCKETS['logs']}/vision/scoring/out/",
    ]
    assert container["env"] == [
        {"name": "CLOUDML_TEAM", "value": "vision"},
        {"name": "CLOUDML_WORKLOAD", "value": "scores"},
        {"name": "CLOUDML_RUN_ID", "valueFrom": {"fieldRef": {"fieldPath": JOB_UID_FIELD}}},
        {"name": "CLOUDML_MODEL_DIR", "value": f"s3://{BUCKETS['models']}/vision/resnet/"},
        {"name": "CLOUDML_INPUT", "value": f"s3://{BUCKETS['datasets']}/vision/scoring/incoming/"},
        {"name": "CLOUDML_OUTPUT", "value": f"s3://{BUCKETS['logs']}/vision/scoring/out/"},
    ]


def test_batch_prediction_job_defaults_backoff_2_no_deadline_never_restart_in_place():
    spec = predict()["spec"]
    assert spec["backoffLimit"] == 2
    assert "activeDeadlineSeconds" not in spec and "ttlSecondsAfterFinished" not in spec
    assert spec["template"]["spec"]["restartPolicy"] == "Never"


def test_pinned_model_version_is_an_argument_before_the_users_args_and_an_env_var():
    container = main_container(predict(modelVersion=12, args=["--batch-size", "64"]))
    assert container["args"][6:] == ["--model-version", "12", "--batch-size", "64"]
    assert {"name": "CLOUDML_MODEL_VERSION", "value": "12"} in container["env"]


def test_paths_with_a_trailing_slash_and_other_buckets_stay_under_the_team_prefix():
    container = main_container(predict(input={"bucket": "checkpoints", "path": "a/b/"}, output={"bucket": "logs", "path": "preds"}))
    assert container["args"][3] == f"s3://{BUCKETS['checkpoints']}/vision/a/b/"
    assert container["args"][5] == f"s3://{BUCKETS['logs']}/vision/preds/"


def test_scheduled_batch_prediction_is_a_cronjob_with_forbid_and_the_job_fields():
    cron = predict(schedule="30 5 * * *", backoffLimit=0, activeDeadline="2h")
    assert cron["kind"] == "CronJob"
    assert {k: v for k, v in cron["spec"].items() if k != "jobTemplate"} == {
        "schedule": "30 5 * * *", "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
    }
    job_spec = cron["spec"]["jobTemplate"]["spec"]
    assert (job_spec["backoffLimit"], job_spec["activeDeadlineSeconds"]) == (0, 7200)
    assert cron["spec"]["jobTemplate"]["metadata"]["labels"]["app.kubernetes.io/component"] == "batchPrediction"


def test_a_users_own_command_runs_as_given_with_the_locations_in_the_environment():
    container = main_container(predict(image="ghcr.io/example/scorer:1.2", command=["score"], args=["--fast"]))
    assert (container["image"], container["command"], container["args"]) == ("ghcr.io/example/scorer:1.2", ["score"], ["--fast"])
    assert [v["name"] for v in container["env"]][3:] == ["CLOUDML_MODEL_DIR", "CLOUDML_INPUT", "CLOUDML_OUTPUT"]


def test_pre_and_post_commands_wrap_the_predict_command():
    container = main_container(predict(preCommands=["echo start"], postCommands=["echo end"]))
    assert container["command"][:2] == ["/bin/sh", "-c"] and container["command"][3] == "cloudml-command"
    assert container["args"][:5] == ["python", "-m", "cloudml_trainer", "predict", "--model-dir"]


def test_gpu_batch_prediction_with_data_volumes_and_secret_env():
    job = predict(gpus=1, volumes=[{"source": "shared", "mountPath": "/mnt/shared"}],
                  secretEnv={"HUB_TOKEN": {"secret": "hub", "key": "token"}}, secrets={"hub": {"token": "t"}})
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloudml.io/gpu-type": "a10g"}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["volumes"] == [{"name": "data-shared", "persistentVolumeClaim": {"claimName": "claim-shared"}}]
    assert pod["containers"][0]["env"][-1] == {"name": "HUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}}


# --- the sample stack -------------------------------------------------------------------------


def test_vision_sample_stacks_sweep_and_nightly_scores_render_valid_objects():
    config = yaml.safe_load((Path(__file__).resolve().parent.parent / "stacks" / "Pulumi.team-vision.yaml").read_text())
    spec = load_team(config["config"]["cloudml:team"])
    workloads = {w.name: w for w in spec.workloads}
    objects = {name: checked(render(workloads[name].kind, WorkloadContext(spec, workloads[name], platform_view())))
               for name in ("resnet-lr", "nightly-scores")}
    config_map, job = objects["resnet-lr"]
    assert (job["spec"]["completions"], job["spec"]["parallelism"], job["spec"]["maxFailedIndexes"]) == (6, 2, 1)
    assert config_map["data"]["5.json"] == '{"learning_rate":0.01,"batch_size":256}'
    [cron] = objects["nightly-scores"]
    assert (cron["kind"], cron["spec"]["schedule"]) == ("CronJob", "30 5 * * *")
    assert main_container(cron)["args"][5] == f"s3://{BUCKETS['datasets']}/vision/scoring/predictions/"
