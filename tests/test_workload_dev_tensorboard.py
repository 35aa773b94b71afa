"""Field-level tests of the devEnvironment and tensorboard workload kinds: the objects they render,
schema-valid and Pod Security `restricted`, with the exact values the design promises."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from components import team as team_component
from components.errors import ConfigError
from components.render import RenderError
from components.spec import DEFAULT_DEV_IMAGE
from policies.pod_security import restricted_violations
from k8s_schema import schema_errors
from workload_fixtures import IMAGE, NAMESPACE, VOLUME_CLAIMS, by_kind, platform_outputs, platform_view, pod_templates, render_workload

GPU_RESOURCE = "nvidia.com/gpu"
SELECTOR = {"cloudml.io/team": "vision", "cloudml.io/workload": "alice"}
INTERNAL_NLB = {
    "service.beta.kubernetes.io/aws-load-balancer-type": "external",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
    "service.beta.kubernetes.io/aws-load-balancer-nlb-target-type": "ip",
}
TRAINING = {"kind": "training", "name": "resnet", "command": ["python", "-m", "train"]}


def dev(**fields) -> dict:
    return {"kind": "devEnvironment", "name": "alice", **fields}


def board(**fields) -> dict:
    return {"kind": "tensorboard", "name": "resnet-tb", "logsFrom": "resnet", **fields}


def render_board(workload: dict, **config) -> list[dict]:
    config.setdefault("others", [TRAINING])
    return render_workload(workload, **config)


def only(objects: list[dict], kind: str) -> dict:
    (obj,) = by_kind(objects)[kind]
    return obj


def pod_spec(objects: list[dict]) -> dict:
    (template,) = [t for obj in objects for t in pod_templates(obj)]
    return template["spec"]


def main_container(objects: list[dict]) -> dict:
    (container,) = pod_spec(objects)["containers"]
    return container


def strings(value) -> Iterator[str]:
    """Every string (keys included) anywhere in a rendered value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def jupyter(idle: int, interval: int) -> list[str]:
    return [
        "jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--ServerApp.root_dir=/home/cloudml",
        f"--ServerApp.shutdown_no_activity_timeout={idle}",
        f"--MappingKernelManager.cull_idle_timeout={idle}",
        f"--MappingKernelManager.cull_interval={interval}",
        "--MappingKernelManager.cull_connected=True",
        "--MappingKernelManager.cull_busy=False",
        f"--TerminalManager.cull_inactive_timeout={idle}",
        f"--TerminalManager.cull_interval={interval}",
    ]


CASES = [
    pytest.param(dev, {}, id="dev-cpu-portForward"),
    pytest.param(dev, {"gpus": 2, "gpuType": "a10g", "expose": "internal",
                       "volumes": [{"source": "datasets", "mountPath": "/data"}, {"source": "shared", "mountPath": "/home/cloudml/shared"}],
                       "preCommands": ["pip install --user x"], "postCommands": ["echo done"]}, id="dev-gpu-internal-wrapped"),
    pytest.param(board, {}, id="tensorboard-portForward"),
    pytest.param(board, {"expose": "internal", "volumes": [{"source": "datasets", "mountPath": "/data"}]}, id="tensorboard-internal"),
]


@pytest.mark.parametrize("make, fields", CASES)
def test_every_object_is_schema_valid_and_every_pod_passes_restricted(make, fields):
    objects = render_board(make(**fields)) if make is board else render_workload(make(**fields))
    for obj in objects:
        assert schema_errors(obj) == [], obj["kind"]
        assert obj["metadata"]["namespace"] == NAMESPACE
        assert obj["metadata"]["labels"]["cloudml.io/workload"] == obj["metadata"]["name"].removesuffix("-home")
    for obj in objects:
        for template in pod_templates(obj):
            assert restricted_violations(template["spec"]) == []


# --- devEnvironment -------------------------------------------------------------------------


def test_dev_environment_is_a_home_claim_a_job_and_a_service():
    objects = render_workload(dev())
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("PersistentVolumeClaim", "alice-home"), ("Job", "alice"), ("Service", "alice"),
    ]


def test_job_completes_when_jupyter_exits_restarts_on_crash_and_is_deleted_after_finishing():
    job = only(render_workload(dev()), "Job")
    assert job["apiVersion"] == "batch/v1"
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["ttlSecondsAfterFinished"] == 300
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"


@pytest.mark.parametrize("session, seconds", [(None, 86400), ("8h", 28800), ("3d", 259200)])
def test_a_session_that_never_goes_idle_still_ends_at_max_session_duration(session, seconds):
    """The Job's activeDeadlineSeconds (default 24h) stops even a kernel kept busy forever; Kubernetes
    then fails the Job, stops its pod (the GPU is free) and deletes it after the TTL like a finished one."""
    job = only(render_workload(dev(maxSessionDuration=session) if session else dev()), "Job")
    assert job["spec"]["activeDeadlineSeconds"] == seconds


@pytest.mark.parametrize("idle, seconds, interval", [("2h", 7200, 60), ("90m", 5400, 60), ("30s", 30, 30)])
def test_jupyter_shuts_down_after_idle_timeout_and_culls_kernels_and_terminals(idle, seconds, interval):
    container = main_container(render_workload(dev(idleTimeout=idle)))
    assert container["command"] == jupyter(seconds, interval)
    assert "args" not in container
    env = {e["name"]: e for e in container["env"]}
    assert env["CLOUDML_IDLE_TIMEOUT"] == {"name": "CLOUDML_IDLE_TIMEOUT", "value": str(seconds)}


@pytest.mark.parametrize("idle, seconds", [("8h", "28800"), (None, "7200")])
def test_pod_carries_its_idle_timeout_for_the_idle_alert(idle, seconds):
    """The pod's cloudml.io/idle-timeout label (seconds) is what DevEnvironmentIdlePastTimeout reads."""
    objects = render_workload(dev(idleTimeout=idle) if idle else dev())
    (template,) = [t for obj in objects for t in pod_templates(obj)]
    assert template["metadata"]["labels"]["cloudml.io/idle-timeout"] == seconds


def test_default_idle_timeout_is_two_hours():
    assert main_container(render_workload(dev()))["command"] == jupyter(7200, 60)


def test_user_args_follow_jupyter_and_pre_post_commands_wrap_it():
    container = main_container(render_workload(dev(args=["--ServerApp.terminals_enabled=False"], preCommands=["pip install --user rich"])))
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert "pip install --user rich" in container["command"][2]
    assert container["args"] == [*jupyter(7200, 60), "--ServerApp.terminals_enabled=False"]


def test_a_users_command_cannot_replace_jupyter_and_its_idle_shutdown():
    """A command of the user's own would drop Jupyter's idle shutdown (the GPU held forever while the idle
    label still promises a timeout): the contract refuses it (exact text: test_spec_workloads.py)."""
    with pytest.raises(ConfigError) as caught:
        render_workload(dev(command=["code-server", "--bind-addr", "0.0.0.0:8888"]))
    [problem] = caught.value.problems
    assert problem.path == "cloudml:team.workloads[0].command"
    assert problem.message.startswith("would replace JupyterLab and its idle shutdown")


@pytest.mark.parametrize("args", [
    ["--ServerApp.terminals_enabled=False"],
    ["--LabApp.default_url=/lab/tree/work", "notebooks/start.ipynb"],
    ["--ServerApp.root_dir=/home/cloudml/project", "--log-level", "DEBUG"],
])
def test_args_that_leave_cloudmls_options_alone_follow_jupyters_flags(args):
    container = main_container(render_workload(dev(args=args)))
    assert container["command"] == jupyter(7200, 60)
    assert container["args"] == args


@pytest.mark.parametrize("arg", [
    "--ServerApp.shutdown_no_activity_timeout=0", "--MappingKernelManager.cull_idle_timeout=0",
    "--AsyncMappingKernelManager.cull_busy=True", "--TerminalManager.cull_inactive_timeout", "--port=9999",
    "--ip=127.0.0.1", "--ServerApp.token=", "--IdentityProvider.token=abc", "--config=/tmp/c.py",
    "--ServerApp.kernel_manager_class=x.NoCull",
])
def test_args_that_would_undo_cloudmls_jupyter_options_are_refused(arg):
    with pytest.raises(ConfigError) as caught:
        render_workload(dev(args=[arg]))
    [problem] = caught.value.problems
    assert problem.path == "cloudml:team.workloads[0].args"
    assert problem.message.startswith(arg.split("=", 1)[0] + " would override what cloudml sets for JupyterLab")


def test_token_comes_only_from_the_generated_secret_and_never_from_a_command_line():
    objects = render_workload(dev(env={"EDITOR": "vim"}))
    container = main_container(objects)
    token_env = [e for e in container["env"] if e["name"] == "JUPYTER_TOKEN"]
    assert token_env == [{"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "alice-token", "key": "token"}}}]
    # The Team component creates that Secret with that key (tests/test_team_program.py checks the planned one).
    # cloudml's variables come after the user's, so a user's JUPYTER_TOKEN could not win.
    assert [e["name"] for e in container["env"]] == ["EDITOR", "HOME", "CLOUDML_IDLE_TIMEOUT", "JUPYTER_TOKEN"]
    for text in strings(container.get("command", []) + container.get("args", [])):
        assert "token" not in text.lower()


def test_no_secret_value_reaches_any_rendered_string():
    secret_value = "s3cr3t-value-7f1c9a"
    objects = render_workload(
        dev(secretEnv={"HF_TOKEN": {"secret": "hub", "key": "token"}}), secrets={"hub": {"token": secret_value}},
    )
    assert not [s for obj in objects for s in strings(obj) if secret_value in s]
    env = {e["name"]: e for e in main_container(objects)["env"]}
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}}


def test_home_is_a_read_write_many_claim_of_the_platform_storage_class_mounted_as_home():
    view = platform_view(sharedStorageClass="efs-homes")
    objects = render_workload(dev(homeSize="200Gi"), view=view)
    claim = only(objects, "PersistentVolumeClaim")
    assert claim["spec"] == {
        "accessModes": ["ReadWriteMany"], "storageClassName": "efs-homes", "resources": {"requests": {"storage": "200Gi"}},
    }
    spec = pod_spec(objects)
    assert spec["volumes"][0] == {"name": "home", "persistentVolumeClaim": {"claimName": "alice-home"}}
    container = main_container(objects)
    assert container["volumeMounts"][0] == {"name": "home", "mountPath": "/home/cloudml"}
    assert {"name": "HOME", "value": "/home/cloudml"} in container["env"]


def test_home_size_defaults_to_50gi():
    assert only(render_workload(dev()), "PersistentVolumeClaim")["spec"]["resources"] == {"requests": {"storage": "50Gi"}}


def test_data_volumes_are_mounted_beside_home():
    objects = render_workload(dev(volumes=[{"source": "datasets", "mountPath": "/data", "subPath": "imagenet"}]))
    assert pod_spec(objects)["volumes"][1] == {
        "name": "data-datasets", "persistentVolumeClaim": {"claimName": VOLUME_CLAIMS["datasets"], "readOnly": True},
    }
    assert main_container(objects)["volumeMounts"][1] == {
        "name": "data-datasets", "mountPath": "/data", "readOnly": True, "subPath": "imagenet",
    }


def test_a_data_volume_cannot_take_the_home_mount_path():
    """The contract refuses it (a config error with a fix); the renderer would refuse it too."""
    with pytest.raises(ConfigError, match="overlaps /home/cloudml"):
        render_workload(dev(volumes=[{"source": "shared", "mountPath": "/home/cloudml/"}]))


def test_tensorboard_sidecar_is_native_gpu_less_and_reads_the_home_logs():
    objects = render_workload(dev(gpus=1))
    spec = pod_spec(objects)
    (sidecar,) = spec["initContainers"]
    assert sidecar["name"] == "tensorboard"
    assert sidecar["restartPolicy"] == "Always"
    assert sidecar["image"] == main_container(objects)["image"] == DEFAULT_DEV_IMAGE
    assert sidecar["command"] == ["tensorboard", "--logdir", "/home/cloudml/logs", "--host", "0.0.0.0", "--port", "6006"]
    assert sidecar["ports"] == [{"name": "tensorboard", "containerPort": 6006, "protocol": "TCP"}]
    assert sidecar["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "500m", "memory": "1Gi"}}
    assert sidecar["env"] == [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]
    assert sidecar["volumeMounts"] == [{"name": "home", "mountPath": "/home/cloudml", "readOnly": True}]


def test_jupyter_port_and_readiness_probe():
    container = main_container(render_workload(dev()))
    assert container["ports"] == [{"name": "http", "containerPort": 8888, "protocol": "TCP"}]
    assert container["readinessProbe"] == {"httpGet": {"path": "/api", "port": "http"}, "periodSeconds": 10, "failureThreshold": 3}


def test_gpus_are_requested_equal_to_limits_on_the_selected_pool():
    objects = render_workload(dev(gpus=2, gpuType="l4"))
    container = main_container(objects)
    assert container["resources"]["limits"][GPU_RESOURCE] == "2"
    assert container["resources"]["requests"] == container["resources"]["limits"]
    spec = pod_spec(objects)
    assert spec["nodeSelector"] == {"cloudml.io/gpu-type": "l4"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_without_gpus_there_is_no_gpu_request_node_selector_or_toleration():
    objects = render_workload(dev())
    spec = pod_spec(objects)
    assert GPU_RESOURCE not in main_container(objects)["resources"]["limits"]
    assert GPU_RESOURCE not in main_container(objects)["resources"]["requests"]
    assert "nodeSelector" not in spec and "tolerations" not in spec


def test_port_forward_service_is_cluster_ip_with_jupyter_and_tensorboard_ports():
    objects = render_workload(dev())
    service = only(objects, "Service")
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": SELECTOR,
        "ports": [
            {"name": "http", "port": 8888, "targetPort": 8888, "protocol": "TCP"},
            {"name": "tensorboard", "port": 6006, "targetPort": 6006, "protocol": "TCP"},
        ],
    }
    assert "annotations" not in service["metadata"]
    assert "cloudml.io/expose" not in pod_templates(only(objects, "Job"))[0]["metadata"]["labels"]


def test_internal_service_is_an_internal_nlb_and_marks_its_pods():
    objects = render_workload(dev(expose="internal", annotations={"example.com/owner": "alice"}))
    service = only(objects, "Service")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert service["metadata"]["annotations"] == {"example.com/owner": "alice", **INTERNAL_NLB}
    assert pod_templates(only(objects, "Job"))[0]["metadata"]["labels"]["cloudml.io/expose"] == "internal"


def test_image_is_the_workloads_then_the_teams_dev_image_never_the_trainer():
    assert main_container(render_workload(dev()))["image"] == DEFAULT_DEV_IMAGE
    custom = "registry.example.com/devenv:1.2.3"
    defaults = {"image": IMAGE, "gpuType": "a10g", "devImage": custom}
    assert main_container(render_workload(dev(), defaults=defaults))["image"] == custom
    own = "registry.example.com/mine:0.1"
    objects = render_workload(dev(image=own), defaults=defaults)
    assert main_container(objects)["image"] == own
    assert pod_spec(objects)["initContainers"][0]["image"] == own


# --- tensorboard ----------------------------------------------------------------------------


def test_tensorboard_is_a_single_replica_deployment_and_a_service():
    objects = render_board(board())
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [("Deployment", "resnet-tb"), ("Service", "resnet-tb")]
    deployment = only(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    selector = {"cloudml.io/team": "vision", "cloudml.io/workload": "resnet-tb"}
    assert deployment["spec"]["selector"] == {"matchLabels": selector}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert {k: labels[k] for k in selector} == selector
    assert deployment["spec"]["template"]["spec"]["restartPolicy"] == "Always"


@pytest.mark.parametrize("logs_from, other", [
    ("resnet", TRAINING),
    ("resnet-dist", {"kind": "distributedTraining", "name": "resnet-dist", "command": ["python"], "workers": 2}),
    ("resnet-lr", {"kind": "sweep", "name": "resnet-lr", "command": ["python"], "parameters": {"lr": [0.1, 0.01]}}),
])
def test_tensorboard_serves_every_run_of_the_named_workload(logs_from, other):
    container = main_container(render_board(board(logsFrom=logs_from), others=[other]))
    assert container["command"] == ["tensorboard", "--logdir", f"/logs/{logs_from}", "--host", "0.0.0.0", "--port", "6006"]
    assert container["ports"] == [{"name": "tensorboard", "containerPort": 6006, "protocol": "TCP"}]
    assert container["readinessProbe"] == {"httpGet": {"path": "/", "port": "tensorboard"}, "periodSeconds": 10, "failureThreshold": 3}


def test_logs_volume_is_the_platforms_claim_mounted_read_only():
    objects = render_board(board(volumes=[{"source": "shared", "mountPath": "/work"}]))
    spec = pod_spec(objects)
    assert spec["volumes"][0] == {"name": "logs", "persistentVolumeClaim": {"claimName": VOLUME_CLAIMS["logs"], "readOnly": True}}
    assert main_container(objects)["volumeMounts"] == [
        {"name": "logs", "mountPath": "/logs", "readOnly": True},
        {"name": "data-shared", "mountPath": "/work", "readOnly": False},
    ]


def test_tensorboard_uses_the_team_image_or_its_own():
    assert main_container(render_board(board()))["image"] == IMAGE
    assert main_container(render_board(board(image="registry.example.com/tb:2.18")))["image"] == "registry.example.com/tb:2.18"


def test_tensorboard_has_no_gpu():
    objects = render_board(board())
    spec = pod_spec(objects)
    assert GPU_RESOURCE not in main_container(objects)["resources"]["limits"]
    assert "nodeSelector" not in spec and "tolerations" not in spec and "initContainers" not in spec


def test_tensorboard_user_command_replaces_default_and_args_follow():
    container = main_container(render_board(board(args=["--samples_per_plugin", "images=100"])))
    assert container["command"][-1] == "6006" and container["args"] == ["--samples_per_plugin", "images=100"]
    wrapped = main_container(render_board(board(command=["tb-wrapper"], postCommands=["echo bye"])))
    assert wrapped["command"][:2] == ["/bin/sh", "-c"] and wrapped["args"] == ["tb-wrapper"]


def test_tensorboard_service_cluster_ip_or_internal_nlb():
    service = only(render_board(board()), "Service")
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": {"cloudml.io/team": "vision", "cloudml.io/workload": "resnet-tb"},
        "ports": [{"name": "tensorboard", "port": 6006, "targetPort": 6006, "protocol": "TCP"}],
    }
    internal = only(render_board(board(expose="internal")), "Service")
    assert internal["spec"]["type"] == "LoadBalancer"
    assert internal["spec"]["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert internal["metadata"]["annotations"] == INTERNAL_NLB


def test_a_data_volume_cannot_sit_at_or_under_the_read_only_logs_mount():
    for path in ("/logs", "/logs/extra"):
        with pytest.raises(ConfigError, match="overlaps /logs"):
            render_board(board(volumes=[{"source": "shared", "mountPath": path}]))


def test_tensorboard_needs_the_platforms_logs_volume():
    outputs = platform_outputs()
    del outputs["teams"]["vision"]["volumes"]["logs"]
    view = platform_view(teams=outputs["teams"])
    with pytest.raises(RenderError, match="no logs volume"):
        render_board(board(), view=view)
