"""The workload fields of the team contract added for every kind: data mounts, secret env, pre/post
commands, model services, sweeps, batch prediction. Each row pins the exact problem a user sees;
the valid rows pin the parsed values."""

from __future__ import annotations

import pytest

from components.errors import ConfigError
from components.spec import concurrent_gpus, load_team, requested_gpus
from workload_fixtures import team_config

TRAIN = {"kind": "training", "name": "train", "command": ["python", "-m", "task"]}
SERVE = {"kind": "modelService", "name": "serve", "model": "resnet"}
SWEEP = {"kind": "sweep", "name": "lr", "command": ["python"], "parameters": {"LR": [0.1, 0.01], "BS": [32, 64]}}
BATCH = {"kind": "batchPrediction", "name": "score", "model": "train", "input": {"path": "in"}, "output": {"path": "out"}}
SECRETS = {"tracker": {"api-key": "[secret]"}}


def problems(*workloads: dict, **extra) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_team(team_config(*workloads, **extra))
    return [str(p) for p in caught.value.problems]


W0 = "cloudml:team.workloads[0]"

ROWS = [
    pytest.param(
        {**TRAIN, "volumes": [{"source": "datasets", "mountPath": "/data", "readOnly": False}]},
        [f"{W0}.volumes[0].readOnly: bucket mounts are read-only (Mountpoint for S3 cannot modify files) (got false). "
         "Fix: remove readOnly; write outputs to S3 with the SDK (CLOUDML_MODEL_DIR etc.) or to the shared volume"],
        id="bucket-mount-writable",
    ),
    pytest.param(
        {**TRAIN, "volumes": [{"source": "shared", "mountPath": "/mnt"}, {"source": "datasets", "mountPath": "/mnt/data"}]},
        # Long values are cut short in the message.
        [f'{W0}.volumes: mounts more than one volume at or under /mnt (got [{{"mountPath": "/mnt", "source": "shared"}}, '
         '{"mountPath": "/mnt/data", "sourc...). Fix: give every volume its own mountPath'],
        id="nested-mount-paths",
    ),
    pytest.param(
        {**TRAIN, "volumes": [{"source": "shared", "mountPath": "/etc/app"}]},
        [f'{W0}.volumes[0].mountPath: hides a directory the container or cloudml needs (got "/etc/app"). Fix: mount '
         "somewhere else, not under /bin, /dev, /etc, /lib, /proc, /sbin, /sys, /usr, /var/run, /cloudml"],
        id="reserved-mount-path",
    ),
    pytest.param(
        {**TRAIN, "volumes": [{"source": "shared", "mountPath": "/work", "subPath": "../other-team"}]},
        [f'{W0}.volumes[0].subPath: is not a relative path inside the volume (got "../other-team"). Fix: write a path '
         "such as imagenet/train, without a leading / or '..'"],
        id="sub-path-escapes",
    ),
    pytest.param(
        {**TRAIN, "env": {"KEY": "x"}, "secretEnv": {"KEY": {"secret": "tracker", "key": "api-key"}}},
        # A mapping's value is not repeated in the message (it may hold many entries).
        [f"{W0}.secretEnv: sets KEY, which env sets too. Fix: set each variable in env or in secretEnv, not both"],
        id="env-and-secret-env",
    ),
    pytest.param(
        {**TRAIN, "secretEnv": {"KEY": {"secret": "missing", "key": "api-key"}}},
        [f'{W0}.secretEnv.KEY.secret: (workload train) names no secret of this stack (got "missing"). Fix: add it under '
         "cloudml:team.secrets, or use one of: tracker"],
        id="unknown-secret",
    ),
    pytest.param(
        {**TRAIN, "secretEnv": {"KEY": {"secret": "tracker", "key": "token"}}},
        [f'{W0}.secretEnv.KEY.key: (workload train) is not a key of secret tracker (got "token"). Fix: use one of: api-key, or add '
         "the key to the secret"],
        id="unknown-secret-key",
    ),
    pytest.param(
        {"kind": "training", "name": "train", "preCommands": ["echo hi"]},
        [f"{W0}.command: (workload train) is not set, but preCommands/postCommands wrap the main command. Fix: set command (the image's "
         "entrypoint and its arguments), or remove preCommands and postCommands"],
        id="pre-commands-without-command",
    ),
    pytest.param(
        {"kind": "tensorboard", "name": "tb", "logsFrom": "train-ref", "gpus": 1, "gpuType": "a10g"},
        ['cloudml:team.workloads[0].gpus: (workload tb) is more than 0, but TensorBoard does not use GPUs (got 1). Fix: remove gpus '
         "from the tensorboard workload"],
        id="tensorboard-gpus",
    ),
    pytest.param(
        {**BATCH, "model": "unknown"},
        [f'{W0}.model: (workload score) is a model no training, distributedTraining or modelService workload of this '
         'stack names '
         '(got "unknown"). Fix: use one of: train'],
        id="batch-prediction-unknown-model",
    ),
    pytest.param(
        {"kind": "distributedTraining", "name": "dist", "command": ["python"], "gpus": 2},
        [f"{W0}.gpus: is not used by distributedTraining (got 2). Fix: set gpusPerWorker (GPUs of each worker, chief "
         "and evaluator pod)"],
        id="distributed-gpus",
    ),
    pytest.param(
        {**SWEEP, "trials": 3},
        [f"{W0}.trials: is decided by the grid (every combination) (got 3). Fix: remove trials, or set algorithm: random"],
        id="grid-with-trials",
    ),
    pytest.param(
        {**SWEEP, "parameters": {"A": list(range(30)), "B": list(range(20))}},
        [f"{W0}.trials: the grid has 600 combinations; a sweep may run at most 500 trials. Fix: try fewer values, or "
         "use algorithm: random with trials"],
        id="grid-too-large",
    ),
    pytest.param(
        {**SWEEP, "maxFailedTrials": 4},
        [f"{W0}.maxFailedTrials: tolerates every one of the 4 trial(s) failing (got 4). Fix: set maxFailedTrials below 4"],
        id="every-trial-may-fail",
    ),
    pytest.param(
        {**SWEEP, "parameters": {"LR": [0.1, float("nan")], "BS": [float("inf")]}},
        [f"{W0}.parameters: BS, LR list a NaN or infinite value. Fix: use finite numbers (or strings such as \"inf\")"],
        id="sweep-non-finite-value",
    ),
    pytest.param(
        {"kind": "devEnvironment", "name": "dev", "env": {"HOME": "/tmp"}, "secretEnv": {"JUPYTER_TOKEN": {"secret": "tracker", "key": "api-key"}}},
        [f"{W0}.env.HOME: (workload dev) is set by cloudml for a devEnvironment. Fix: remove it (the access token comes from the "
         "generated Secret, HOME is the home volume)",
         f"{W0}.secretEnv.JUPYTER_TOKEN: (workload dev) is set by cloudml for a devEnvironment. Fix: remove it (the access token "
         "comes from the generated Secret, HOME is the home volume)"],
        id="dev-environment-reserved-env",
    ),
    pytest.param(
        # /home would hide the home volume (a mount nested inside the home is fine: the dev-environment tests).
        {"kind": "devEnvironment", "name": "dev", "volumes": [{"source": "shared", "mountPath": "/home"}]},
        [f'{W0}.volumes[0].mountPath: (workload dev) overlaps /home/cloudml, where a devEnvironment mounts its own volume (got '
         '"/home"). Fix: mount it elsewhere, outside /home/cloudml'],
        id="dev-environment-home-path",
    ),
    pytest.param(
        {"kind": "tensorboard", "name": "tb", "logsFrom": "train-ref", "volumes": [{"source": "shared", "mountPath": "/logs"}]},
        [f'{W0}.volumes[0].mountPath: (workload tb) overlaps /logs, where a tensorboard mounts its own volume (got "/logs"). Fix: '
         "mount it elsewhere, outside /logs"],
        id="tensorboard-logs-path",
    ),
    pytest.param(
        {**SERVE, "version": 3, "versionLabels": {"stable": 3}},
        [f"{W0}.versionLabels: is set together with version. Fix: pin one version with version, "
         "or serve labelled versions with versionLabels"],
        id="version-and-labels",
    ),
    pytest.param(
        {**SERVE, "versionLabels": {"stable-1": 3}},
        [f'{W0}.versionLabels.stable-1: is not a TensorFlow Serving version label (got "stable-1"). Fix: use letters, '
         "digits and '_' (e.g. stable, canary)"],
        id="bad-version-label",
    ),
    pytest.param(
        {**SERVE, "gpus": 1, "replicas": 3, "autoscale": {"maxReplicas": 4}},
        [f"{W0}.replicas: (workload serve) is set together with autoscale, which decides the replicas (got 3). "
         "Fix: remove replicas; autoscale.minReplicas and maxReplicas decide"],
        id="autoscale-and-replicas",
    ),
    pytest.param(
        # `replicas: 1` is the default, but written next to autoscale it would be silently ignored too.
        {**SERVE, "gpus": 1, "replicas": 1, "autoscale": {"maxReplicas": 4}},
        [f"{W0}.replicas: (workload serve) is set together with autoscale, which decides the replicas (got 1). "
         "Fix: remove replicas; autoscale.minReplicas and maxReplicas decide"],
        id="autoscale-and-replicas-one",
    ),
    pytest.param(
        {**SERVE, "autoscale": {"maxReplicas": 4}},
        [f"{W0}.autoscale: (workload serve) would scale on GPU utilization, but the service has no GPUs: it would "
         "stay at minReplicas. Fix: set autoscale.requestsPerSecond (requests per second per replica) or "
         "autoscale.scaleToZero, or give the service gpus"],
        id="cpu-service-autoscale-on-gpu-only",
    ),
    pytest.param(
        {**SERVE, "autoscale": {"maxReplicas": 4, "requestsPerSecond": 50, "gpuUtilization": 60}},
        [f"{W0}.autoscale.gpuUtilization: (workload serve) is set, but the service has no GPUs to measure (got 60). "
         "Fix: remove gpuUtilization, or give the service gpus"],
        id="cpu-service-gpu-utilization-target",
    ),
    pytest.param(
        {**SWEEP, "seed": 3},
        [f"{W0}.seed: is only used by random search (a grid runs every combination, in order) (got 3). "
         "Fix: remove seed, or set algorithm: random"],
        id="grid-with-seed",
    ),
    pytest.param(
        {**SWEEP, "seed": 0},
        [f"{W0}.seed: is only used by random search (a grid runs every combination, in order) (got 0). "
         "Fix: remove seed, or set algorithm: random"],
        id="grid-with-default-seed-written-out",
    ),
    pytest.param(
        # 500 trial files of {"NOTE":"<2100 characters>"} and their keys 0.json..499.json.
        {**SWEEP, "algorithm": "random", "trials": 500, "parameters": {"NOTE": ["x" * 2100, "y" * 2100]}},
        [f"{W0}.parameters: (workload lr) makes 1,059,390 bytes of trial parameters for its ConfigMap lr-trials; "
         "Kubernetes keeps at most 1 MiB in one ConfigMap (cloudml allows 1,000,000 bytes). Fix: run fewer trials "
         "(fewer values, or a lower trials count) or shorten the parameter names and values"],
        id="sweep-trials-over-a-config-map",
    ),
    pytest.param(
        {**BATCH, "output": {"bucket": "models", "path": "train/predictions"}},
        [f'{W0}.output.bucket: is where model services and batch predictions load model versions from; predictions '
         'written there would mix with the served models (got "models"). Fix: write predictions to the datasets '
         "bucket (the default) or the logs bucket"],
        id="batch-output-into-models",
    ),
    pytest.param(
        {**TRAIN, "env": {"NVIDIA_VISIBLE_DEVICES": "all"}},
        [f'{W0}.env.NVIDIA_VISIBLE_DEVICES: is read by the NVIDIA container runtime to choose the GPUs and driver '
         'features a container gets (got "NVIDIA_VISIBLE_DEVICES"). Fix: remove it; request GPUs with `gpus:` '
         "(gpusPerWorker for distributedTraining): the device plugin sets NVIDIA_VISIBLE_DEVICES to the GPUs the "
         "pod was given"],
        id="env-nvidia-visible-devices",
    ),
    pytest.param(
        {**TRAIN, "secretEnv": {"NVIDIA_DRIVER_CAPABILITIES": {"secret": "tracker", "key": "api-key"}}},
        [f'{W0}.secretEnv.NVIDIA_DRIVER_CAPABILITIES: is read by the NVIDIA container runtime to choose the GPUs '
         'and driver features a container gets (got "NVIDIA_DRIVER_CAPABILITIES"). Fix: remove it; request GPUs '
         "with `gpus:` (gpusPerWorker for distributedTraining): the device plugin sets NVIDIA_VISIBLE_DEVICES to "
         "the GPUs the pod was given"],
        id="secret-env-nvidia-prefix",
    ),
    pytest.param(
        {"kind": "devEnvironment", "name": "dev", "command": ["code-server", "--bind-addr", "0.0.0.0:8888"]},
        [f'{W0}.command: would replace JupyterLab and its idle shutdown, so the environment and its GPUs would never '
         'be released when idle (got ["code-server", "--bind-addr", "0.0.0.0:8888"]). Fix: remove command; add '
         "JupyterLab options with args, and install or start tools with preCommands"],
        id="dev-environment-command",
    ),
    pytest.param(
        # traitlets lets a subclass's section (AsyncMappingKernelManager) win over MappingKernelManager's.
        {"kind": "devEnvironment", "name": "dev", "args": [
            "--ServerApp.shutdown_no_activity_timeout=0", "--AsyncMappingKernelManager.cull_idle_timeout", "0",
            "--IdentityProvider.token=", "--ServerApp.terminals_enabled=False"]},
        [f"{W0}.args: --ServerApp.shutdown_no_activity_timeout, --AsyncMappingKernelManager.cull_idle_timeout, "
         "--IdentityProvider.token would override what cloudml sets for JupyterLab (idle shutdown and culling, the "
         "access token and authentication, the address and port, config files) (got "
         '["--ServerApp.shutdown_no_activity_timeout=0", "--AsyncMappingKernelManager.c...). Fix: remove '
         "them; set idleTimeout and maxSessionDuration for when the environment stops"],
        id="dev-environment-args-undo-idle-shutdown",
    ),
    pytest.param(
        {**SERVE, "autoscale": {"minReplicas": 3, "maxReplicas": 2}},
        [f"{W0}.autoscale.maxReplicas: is below minReplicas (3) (got 2). Fix: set maxReplicas to 3 or more, or lower minReplicas"],
        id="autoscale-max-below-min",
    ),
    pytest.param(
        {**SERVE, "autoscale": {"minReplicas": 0, "maxReplicas": 2}},
        [f"{W0}.autoscale.scaleToZero: minReplicas is 0, but nothing would wake the service: its own metrics vanish "
         "with its last replica. Fix: add scaleToZero with an activationQuery measured outside the service, or set "
         "minReplicas to 1 or more"],
        id="zero-replicas-without-activation",
    ),
    pytest.param(
        {**SERVE, "autoscale": {"minReplicas": 1, "maxReplicas": 2,
                                "scaleToZero": {"activationQuery": "sum(x)", "threshold": 5}}},
        [f"{W0}.autoscale.scaleToZero: is set, but minReplicas is 1. Fix: set minReplicas: 0 to let the service "
         "scale to zero"],
        id="scale-to-zero-with-a-floor",
    ),
    pytest.param(
        {**SERVE, "sourceCidrs": ["203.0.113.0/24"]},
        [f'{W0}.sourceCidrs: is only used with expose: internet (got ["203.0.113.0/24"]). Fix: remove sourceCidrs, '
         "or set expose: internet"],
        id="cidrs-without-internet",
    ),
    pytest.param(
        {**SERVE, "expose": "internet"},
        [f"{W0}.sourceCidrs: an internet-facing service needs the client CIDRs it accepts (got []). Fix: list them in sourceCidrs"],
        id="internet-without-cidrs",
    ),
    pytest.param(
        {**SERVE, "expose": "internet", "sourceCidrs": ["0.0.0.0/0"]},
        [f'{W0}.sourceCidrs: 0.0.0.0/0 opens the service to the whole internet (got ["0.0.0.0/0"]). Fix: list your '
         "clients' CIDRs"],
        id="internet-open-to-world",
    ),
    pytest.param(
        {**BATCH, "input": {"bucket": "secrets", "path": "/in"}},
        [f'{W0}.input.bucket: input should be \'datasets\', \'models\', \'checkpoints\' or \'logs\' (got "secrets"). '
         "Fix: use one of 'datasets', 'models', 'checkpoints' or 'logs'",
         f'{W0}.input.path: is not a relative path inside the volume (got "/in"). Fix: write a path such as '
         "imagenet/train, without a leading / or '..'"],
        id="batch-input-outside-team-buckets",
    ),
]


@pytest.mark.parametrize(("workload", "expected"), ROWS)
def test_workload_rule_reports_exact_problem(workload, expected):
    """Each workload rule yields exactly the pinned problems (and nothing else); a valid training
    workload named `train` sits beside it for rules that reference one."""
    assert problems(workload, {**TRAIN, "name": "train-ref", "model": "train"}, secrets=SECRETS) == expected


def test_a_secret_may_not_take_the_name_of_a_dev_environments_token_secret():
    """Both would be a Secret `alice-token` in the namespace; the second would fail at apply."""
    assert problems({"kind": "devEnvironment", "name": "alice"}, secrets={"alice-token": {"k": "[secret]"}}) == [
        "cloudml:team.secrets.alice-token: has the name of the Secret cloudml generates for devEnvironment alice's "
        "access token. Fix: rename the secret (and the secretEnv references to it)"
    ]


def test_bucket_mounts_default_to_read_only_and_shared_to_read_write():
    spec = load_team(team_config({**TRAIN, "volumes": [
        {"source": "shared", "mountPath": "/mnt/shared"}, {"source": "logs", "mountPath": "/logs", "subPath": "old-run"},
    ]}))
    assert [(v.source, v.read_only, v.sub_path) for v in spec.workloads[0].volumes] == [("shared", False, None), ("logs", True, "old-run")]


def test_concurrent_gpus_count_every_pod_that_can_run_at_once():
    """What the quota check adds up: pods x GPUs, by kind."""
    spec = load_team(team_config(
        {**TRAIN, "gpus": 2},
        {"kind": "distributedTraining", "name": "mwms", "command": ["p"], "chief": 1, "workers": 3, "evaluator": 1, "gpusPerWorker": 2},
        {"kind": "distributedTraining", "name": "ps", "command": ["p"], "strategy": "parameterServer", "chief": 1, "ps": 2,
         "workers": 3, "gpusPerWorker": 1},
        {**SERVE, "gpus": 1, "autoscale": {"minReplicas": 1, "maxReplicas": 5}},
        {**SWEEP, "gpus": 1, "parallelism": 3},
        {"kind": "devEnvironment", "name": "dev", "gpus": 1},
    ))
    assert [requested_gpus(w) for w in spec.workloads] == [2, 2, 1, 1, 1, 1]
    # mwms: chief + 3 workers + evaluator, 2 each; ps: only the 3 workers (the PS chief coordinates, ps hold
    # variables); the service: 5 replicas plus the one extra pod of a rolling update.
    assert [concurrent_gpus(w) for w in spec.workloads] == [2, 10, 3, 6, 3, 1]


def test_batch_prediction_paths_default_to_the_datasets_bucket():
    spec = load_team(team_config(TRAIN, BATCH))
    batch = spec.workloads[1]
    assert (batch.input.bucket, batch.input.path, batch.output.bucket, batch.model_version) == ("datasets", "in", "datasets", None)


def test_serving_and_dev_environments_need_no_trainer_default_image():
    """modelService and devEnvironment have their own default images: no defaults.image needed."""
    spec = load_team(team_config(SERVE, {"kind": "devEnvironment", "name": "dev"}, defaults={}))
    assert [w.image for w in spec.workloads] == [None, None]


def test_model_service_defaults():
    spec = load_team(team_config(SERVE))
    serve = spec.workloads[0]
    assert (serve.replicas, serve.autoscale, serve.batching, serve.expose, serve.version, serve.version_labels) == (
        1, None, None, "cluster", None, {})
    assert spec.defaults.serving_image == "tensorflow/serving:2.18.0-gpu"
    assert spec.defaults.dev_image == "tensorflow/tensorflow:2.20.0-gpu-jupyter"
