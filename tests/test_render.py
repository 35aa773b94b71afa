"""The renderer, field by field: `components.render` for the `training` kind, its `q` filter
(`yaml_scalar`). The tenancy template is tested in test_tenancy.py.

Every test builds its input the way a stack does (`load_team` on camelCase config,
`PlatformView.from_outputs` on the platform's outputs, both from tests/workload_fixtures.py),
renders, and asserts on the parsed objects; every training object rendered is also checked against
the Kubernetes 1.31 schema and Pod Security `restricted`.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterator

import pytest
import yaml

from components.platform_view import PlatformView
from components.render import (
    RENDERED_KINDS,
    RUN_AS_USER,
    RenderError,
    WorkloadContext,
    render,
    render_template,
    yaml_scalar,
)
from components.spec import load_team
from components.workloads import KIND_VALUES
from k8s_schema import schema_errors
from policies.pod_security import restricted_violations
from workload_fixtures import BUCKETS, IMAGE, NAMESPACE, SERVICE_ACCOUNT, VOLUME_CLAIMS, platform_outputs, team_config
from workload_fixtures import platform_view as fixture_platform_view

OTHER_IMAGE = "ghcr.io/example/other-trainer:2.0.1"

STANDARD_LABEL_KEYS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "cloudml.io/team",
    "cloudml.io/workload",
}
# Kubernetes label value: at most 63 characters of this shape (apimachinery IsValidLabelValue).
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


# --- helpers ----------------------------------------------------------------------------------


def platform_view(team: str = "vision", namespace: str = NAMESPACE, service_account: str = SERVICE_ACCOUNT) -> PlatformView:
    """The fixtures' platform outputs (buckets, volume claims and all) with this tenant; namespace
    and service account deliberately not the naming convention's, so tests prove they come from
    the view."""
    tenant = {**platform_outputs(team)["teams"][team], "namespace": namespace, "serviceAccount": service_account}
    return fixture_platform_view(team, teams={team: tenant})


def render_one(workload: dict, *, team: str = "vision", defaults: dict | None = None, view: PlatformView | None = None,
               secrets: dict | None = None) -> dict:
    """Render the single workload `workload` (camelCase config) and return its only object, after
    checking it against the Kubernetes 1.31 schema and its pod against Pod Security `restricted`."""
    spec = load_team(team_config({"kind": "training", "name": "job", **workload}, name=team, defaults=defaults, secrets=secrets or {}))
    objects = render("training", WorkloadContext(spec, spec.workloads[0], view or platform_view(team)))
    assert len(objects) == 1, objects
    assert schema_errors(objects[0]) == []
    assert restricted_violations(pod_spec(objects[0])) == []
    return objects[0]


def job_spec(obj: dict) -> dict:
    """The Job spec of a Job, or the jobTemplate's Job spec of a CronJob."""
    return obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]


def pod_template(obj: dict) -> dict:
    return job_spec(obj)["template"]


def pod_spec(obj: dict) -> dict:
    return pod_template(obj)["spec"]


def containers(obj: dict) -> list[dict]:
    spec = pod_spec(obj)
    return [*spec.get("initContainers", []), *spec["containers"], *spec.get("ephemeralContainers", [])]


def walk(node: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, (*path, i))


def label_maps(obj: dict) -> dict[str, dict]:
    """Every labels mapping of the object: the object's, the jobTemplate's, the pod template's."""
    maps = {"metadata": obj["metadata"]["labels"]}
    if obj["kind"] == "CronJob":
        maps["jobTemplate"] = obj["spec"]["jobTemplate"]["metadata"]["labels"]
    maps["pod template"] = pod_template(obj)["metadata"]["labels"]
    return maps


GPU_JOB = {"gpus": 2, "command": ["python", "-m", "train"]}
CPU_JOB = {"command": ["python", "-m", "prep"]}
SCHEDULED = {"schedule": "0 3 * * *"}


# --- kind and top-level shape -----------------------------------------------------------------


def test_training_without_schedule_is_a_batch_v1_job_named_after_the_workload():
    obj = render_one(CPU_JOB)
    assert obj["apiVersion"] == "batch/v1"
    assert obj["kind"] == "Job"
    assert obj["metadata"]["name"] == "job"
    assert "schedule" not in obj["spec"] and "jobTemplate" not in obj["spec"]


def test_training_with_schedule_is_a_cronjob_with_forbid_concurrency_and_that_schedule():
    obj = render_one({**CPU_JOB, "schedule": "*/15 2-4 * * MON-FRI"})
    assert obj["apiVersion"] == "batch/v1"
    assert obj["kind"] == "CronJob"
    assert obj["spec"]["schedule"] == "*/15 2-4 * * MON-FRI"
    assert obj["spec"]["concurrencyPolicy"] == "Forbid"
    assert obj["spec"]["successfulJobsHistoryLimit"] == 3
    assert obj["spec"]["failedJobsHistoryLimit"] == 3
    assert obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_cron_macro_schedule_is_passed_through_as_a_string():
    obj = render_one({**CPU_JOB, "schedule": "@weekly"})
    assert obj["spec"]["schedule"] == "@weekly"


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_namespace_and_service_account_come_from_the_platform_view(extra):
    view = platform_view(namespace="tenant-ns-7", service_account="runner-sa")
    obj = render_one({**CPU_JOB, **extra}, view=view)
    assert obj["metadata"]["namespace"] == "tenant-ns-7"
    assert pod_spec(obj)["serviceAccountName"] == "runner-sa"


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_pods_never_restart_in_place(extra):
    assert pod_spec(render_one({**CPU_JOB, **extra}))["restartPolicy"] == "Never"


# --- labels and annotations -------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_standard_labels_on_object_job_template_and_pod_template(extra):
    obj = render_one({**CPU_JOB, **extra, "name": "resnet-a"})
    expected = {
        "app.kubernetes.io/name": "resnet-a",
        "app.kubernetes.io/instance": "vision-resnet-a",
        "app.kubernetes.io/component": "training",
        "app.kubernetes.io/part-of": "cloudml",
        "app.kubernetes.io/managed-by": "cloudml",
        "cloudml.io/team": "vision",
        "cloudml.io/workload": "resnet-a",
    }
    for where, labels in label_maps(obj).items():
        assert labels == expected, where


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_user_labels_and_annotations_propagate_everywhere_next_to_the_standard_ones(extra):
    obj = render_one({
        **CPU_JOB, **extra,
        "labels": {"example.com/cost-center": "vision-research", "tier": ""},
        "annotations": {"example.com/owner": "vision-team: resnet #1", "note": "multi\nline"},
    })
    for where, labels in label_maps(obj).items():
        assert labels["example.com/cost-center"] == "vision-research", where
        assert labels["tier"] == "", where
        assert STANDARD_LABEL_KEYS <= set(labels), where
    annotation_maps = [obj["metadata"]["annotations"], pod_template(obj)["metadata"]["annotations"]]
    if obj["kind"] == "CronJob":
        annotation_maps.append(obj["spec"]["jobTemplate"]["metadata"]["annotations"])
    for annotations in annotation_maps:
        assert annotations == {"example.com/owner": "vision-team: resnet #1", "note": "multi\nline"}


def test_no_annotations_key_when_the_workload_has_none():
    obj = render_one(CPU_JOB)
    assert "annotations" not in obj["metadata"]
    assert "annotations" not in pod_template(obj)["metadata"]


def test_user_cannot_override_standard_labels_because_the_spec_rejects_reserved_prefixes():
    from components.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_team(team_config({"kind": "training", "name": "job", "labels": {"cloudml.io/team": "other"}}))
    assert "cloudml:team.workloads[0].labels.cloudml.io/team" in str(caught.value)


def test_spec_refuses_team_and_workload_names_whose_instance_label_would_exceed_63():
    """app.kubernetes.io/instance is '<team>-<workload>': a 24-char team with a 40-char workload (65 chars) is refused."""
    from components.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_team(team_config({"kind": "training", "name": "w" * 40, **CPU_JOB}, name="t" * 24))
    assert [str(p) for p in caught.value.problems] == [
        f'cloudml:team.workloads[0].name: (workload {"w" * 40}) with team name {"t" * 24} makes the instance label 65 '
        'characters long; '
        f'Kubernetes allows 63 (got "{"w" * 40}"). Fix: shorten it to 38 characters or fewer'
    ]


def test_every_label_value_is_a_valid_kubernetes_label_value_for_the_longest_names_the_spec_accepts():
    team = "t" * 24  # TeamName: dns_label(24)
    workload = "w" * 38  # the longest workload name that fits the instance label with this team
    spec = load_team(team_config({"kind": "training", "name": workload, **CPU_JOB}, name=team))
    obj = render("training", WorkloadContext(spec, spec.workloads[0], platform_view(team)))[0]
    for where, labels in label_maps(obj).items():
        for key, value in labels.items():
            assert len(value) <= 63 and LABEL_VALUE.fullmatch(value), f"{where}: {key}={value!r} ({len(value)} chars)"


# --- image, resources, GPU placement ----------------------------------------------------------


def test_image_defaults_to_the_team_default():
    assert containers(render_one(CPU_JOB))[0]["image"] == IMAGE


def test_image_of_the_workload_wins_over_the_default():
    assert containers(render_one({**CPU_JOB, "image": OTHER_IMAGE}))[0]["image"] == OTHER_IMAGE


def test_cpu_and_memory_default_to_the_spec_defaults_when_the_team_sets_none():
    obj = render_one(CPU_JOB, defaults={"image": IMAGE})
    resources = containers(obj)[0]["resources"]
    assert resources["requests"] == {"cpu": "2", "memory": "8Gi"}
    assert resources["limits"] == {"cpu": "2", "memory": "8Gi"}


def test_cpu_and_memory_default_to_the_team_defaults():
    obj = render_one(CPU_JOB, defaults={"image": IMAGE, "cpu": "6", "memory": "24Gi"})
    resources = containers(obj)[0]["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "6", "memory": "24Gi"}


def test_cpu_and_memory_of_the_workload_win_over_the_team_defaults():
    obj = render_one({**CPU_JOB, "cpu": "500m", "memory": "1536Mi"}, defaults={"image": IMAGE, "cpu": "6", "memory": "24Gi"})
    resources = containers(obj)[0]["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "500m", "memory": "1536Mi"}


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_gpu_pod_requests_gpus_in_limits_and_requests_equally(extra):
    obj = render_one({**GPU_JOB, **extra})
    resources = containers(obj)[0]["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == "2"
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"]
    assert resources["requests"] == resources["limits"]


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_gpu_pod_selects_the_default_gpu_type_and_tolerates_the_gpu_taint(extra):
    spec = pod_spec(render_one({**GPU_JOB, **extra}))
    assert spec["nodeSelector"] == {"cloudml.io/gpu-type": "a10g"}
    assert spec["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_gpu_type_of_the_workload_wins_over_the_default():
    spec = pod_spec(render_one({**GPU_JOB, "gpuType": "l4"}))
    assert spec["nodeSelector"] == {"cloudml.io/gpu-type": "l4"}


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_cpu_only_pod_has_no_gpu_resource_selector_or_toleration(extra):
    obj = render_one({**CPU_JOB, **extra})  # the team's defaults.gpuType alone asks for no GPU
    resources = containers(obj)[0]["resources"]
    assert "nvidia.com/gpu" not in resources["limits"]
    assert "nvidia.com/gpu" not in resources["requests"]
    spec = pod_spec(obj)
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec
    assert not any("gpu" in str(key) for path, _ in walk(spec) for key in path)


# --- Job fields -------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_job_defaults_backoff_3_no_deadline_no_ttl(extra):
    """By default a finished Job is kept: Pulumi manages it, and a TTL deletion would re-run it on refresh."""
    spec = job_spec(render_one({**CPU_JOB, **extra}))
    assert spec["backoffLimit"] == 3
    assert "activeDeadlineSeconds" not in spec
    assert "ttlSecondsAfterFinished" not in spec


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_job_fields_as_configured_with_durations_in_seconds(extra):
    spec = job_spec(render_one({**CPU_JOB, **extra, "backoffLimit": 0, "activeDeadline": "12h", "ttlAfterFinished": "1h30m"}))
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 43200
    assert spec["ttlSecondsAfterFinished"] == 5400


def test_active_deadline_given_in_seconds_is_kept():
    assert job_spec(render_one({**CPU_JOB, "activeDeadline": 90}))["activeDeadlineSeconds"] == 90


# --- Pod Security `restricted` ----------------------------------------------------------------

_RESTRICTED_VOLUME_TYPES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"}


@pytest.mark.parametrize("extra", [CPU_JOB, GPU_JOB, {**GPU_JOB, **SCHEDULED}], ids=["cpu-job", "gpu-job", "gpu-cronjob"])
def test_pod_passes_pod_security_restricted_field_by_field(extra):
    obj = render_one(extra)
    spec = pod_spec(obj)
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert isinstance(pod_sc["runAsUser"], int) and pod_sc["runAsUser"] != 0
    assert pod_sc["runAsUser"] == RUN_AS_USER
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    for host_field in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        assert host_field not in spec, host_field
    for volume in spec.get("volumes", []):
        assert set(volume) - {"name"} <= _RESTRICTED_VOLUME_TYPES, volume
    assert not any("hostPath" in path for path, _ in walk(spec))
    all_containers = containers(obj)
    assert all_containers, "a pod without containers proves nothing"
    for container in all_containers:
        sc = container["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert "privileged" not in sc or sc["privileged"] is False
        assert sc.get("runAsUser", RUN_AS_USER) != 0
        assert sc.get("runAsNonRoot", True) is True
        assert sc.get("seccompProfile", {"type": "RuntimeDefault"})["type"] in ("RuntimeDefault", "Localhost")
        for port in container.get("ports", []):
            assert "hostPort" not in port
    assert restricted_violations(spec) == []


# --- command / args / env ---------------------------------------------------------------------


def run_env_of(name: str = "job", model: str | None = None) -> list[dict]:
    """The env cloudml gives a training container, before the workload's own."""
    return [
        {"name": "CLOUDML_TEAM", "value": "vision"},
        {"name": "CLOUDML_WORKLOAD", "value": name},
        {"name": "CLOUDML_RUN_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}}},
        {"name": "CLOUDML_CHECKPOINT_DIR", "value": f"s3://{BUCKETS['checkpoints']}/vision/{name}/$(CLOUDML_RUN_ID)/"},
        {"name": "CLOUDML_LOG_DIR", "value": f"s3://{BUCKETS['logs']}/vision/{name}/$(CLOUDML_RUN_ID)/"},
        {"name": "CLOUDML_MODEL_DIR", "value": f"s3://{BUCKETS['models']}/vision/{model or name}/"},
    ]


def test_command_args_and_env_are_written_as_given_in_order():
    obj = render_one({
        "command": ["python", "-m", "cloudml_trainer"],
        "args": ["--lr", "3e-5", "--epochs", "30", "--flag", "true", "--none", "null", "--empty", ""],
        "env": {"B_SECOND": "2", "A_FIRST": "yes", "EMPTY": ""},
    })
    container = containers(obj)[0]
    assert container["name"] == "main"
    assert container["command"] == ["python", "-m", "cloudml_trainer"]
    assert container["args"] == ["--lr", "3e-5", "--epochs", "30", "--flag", "true", "--none", "null", "--empty", ""]
    assert all(isinstance(a, str) for a in container["args"])
    assert container["env"] == [
        *run_env_of(),
        {"name": "B_SECOND", "value": "2"},
        {"name": "A_FIRST", "value": "yes"},
        {"name": "EMPTY", "value": ""},
    ]


def test_no_command_or_args_keys_when_not_given_and_env_is_cloudmls_only():
    container = containers(render_one({}))[0]
    assert "command" not in container and "args" not in container
    assert container["env"] == run_env_of()
    assert container["image"] == IMAGE


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_training_env_names_its_checkpoint_log_and_model_directories_under_the_team_prefix(extra):
    """The model directory is the `model:` of the workload, or its name; the checkpoint and log
    directories are per run (the run's Job UID, label batch.kubernetes.io/controller-uid), so a CronJob's
    runs do not share them."""
    assert containers(render_one({**CPU_JOB, **extra, "name": "resnet-a"}))[0]["env"] == run_env_of("resnet-a")
    assert containers(render_one({**CPU_JOB, **extra, "model": "resnet"}))[0]["env"] == run_env_of(model="resnet")


def test_secret_env_comes_after_plain_env_as_secret_key_references():
    obj = render_one({**CPU_JOB, "env": {"PLAIN": "p"}, "secretEnv": {"WANDB_API_KEY": {"secret": "wandb", "key": "api-key"}}},
                     secrets={"wandb": {"api-key": "do-not-render"}})
    env = containers(obj)[0]["env"]
    assert env[len(run_env_of()):] == [
        {"name": "PLAIN", "value": "p"},
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}},
    ]
    assert "do-not-render" not in repr(obj)


def test_pre_and_post_commands_wrap_the_command_in_sh_with_the_command_as_arguments():
    obj = render_one({**CPU_JOB, "args": ["--x", "a b"], "preCommands": ["mkdir -p /mnt/shared/out"], "postCommands": ["ls /mnt/shared/out"]})
    container = containers(obj)[0]
    assert container["command"][:2] == ["/bin/sh", "-c"] and container["command"][3] == "cloudml-command"
    script = container["command"][2]
    assert script.index("mkdir -p /mnt/shared/out") < script.index('"$$@" &') < script.index("ls /mnt/shared/out")
    assert container["args"] == ["python", "-m", "prep", "--x", "a b"]


@pytest.mark.parametrize("extra", [{}, SCHEDULED], ids=["job", "cronjob"])
def test_data_volumes_are_mounted_from_the_teams_claims(extra):
    obj = render_one({**CPU_JOB, **extra, "volumes": [
        {"source": "shared", "mountPath": "/mnt/shared"},
        {"source": "datasets", "mountPath": "/data", "subPath": "imagenet"},
    ]})
    assert pod_spec(obj)["volumes"] == [
        {"name": "data-shared", "persistentVolumeClaim": {"claimName": VOLUME_CLAIMS["shared"]}},
        {"name": "data-datasets", "persistentVolumeClaim": {"claimName": VOLUME_CLAIMS["datasets"], "readOnly": True}},
    ]
    assert containers(obj)[0]["volumeMounts"] == [
        {"name": "data-shared", "mountPath": "/mnt/shared", "readOnly": False},
        {"name": "data-datasets", "mountPath": "/data", "readOnly": True, "subPath": "imagenet"},
    ]


def test_no_volumes_keys_without_data_mounts():
    obj = render_one(CPU_JOB)
    assert "volumes" not in pod_spec(obj) and "volumeMounts" not in containers(obj)[0]


def test_render_sees_only_the_workload_it_is_given():
    spec = load_team(team_config(
        {"kind": "training", "name": "first", "command": ["a"]},
        {"kind": "training", "name": "second", "command": ["b"], "gpus": 1},
    ))
    view = platform_view()
    first = render("training", WorkloadContext(spec, spec.workloads[0], view))[0]
    second = render("training", WorkloadContext(spec, spec.workloads[1], view))[0]
    assert (first["metadata"]["name"], containers(first)[0]["command"]) == ("first", ["a"])
    assert (second["metadata"]["name"], containers(second)[0]["command"]) == ("second", ["b"])
    assert "nodeSelector" not in pod_spec(first) and "nodeSelector" in pod_spec(second)


# --- render() errors --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nope", "Training", "tfjob"])
def test_render_of_a_kind_without_a_template_raises_render_error_naming_the_kind(kind):
    spec = load_team(team_config({"kind": "training", "name": "job"}))
    with pytest.raises(RenderError, match=re.escape(repr(kind))):
        render(kind, WorkloadContext(spec, spec.workloads[0], platform_view()))


def test_every_kind_of_the_contract_has_a_values_module_and_a_template():
    from typing import get_args

    from components.render import TEMPLATES_DIR
    from components.spec import Workload

    contract_kinds = {get_args(model.model_fields["kind"].annotation)[0] for model in get_args(get_args(Workload)[0])}
    assert set(RENDERED_KINDS) == set(KIND_VALUES) == contract_kinds
    assert [k for k in RENDERED_KINDS if not (TEMPLATES_DIR / "workloads" / f"{k}.yaml.j2").is_file()] == []


def test_render_template_reports_an_undefined_value_as_render_error():
    with pytest.raises(RenderError, match="tenancy/team.yaml.j2"):
        render_template("tenancy/team.yaml.j2", team="x")  # StrictUndefined: namespace missing


# --- yaml_scalar (the `q` filter) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (-42, "-42"),
        (10**30, "1000000000000000000000000000000"),
        (1.5, "1.5"),
        (-0.25, "-0.25"),
        ("", '""'),
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("back\\slash", '"back\\\\slash"'),
        ("a: b # c", '"a: b # c"'),
        ("line\nbreak\ttab", '"line\\u000abreak\\u0009tab"'),
        ("é", '"\\u00e9"'),
        ("\U0001f600", '"\\U0001f600"'),
        ({"a": 1, "b": [True, None]}, '{? "a": 1, ? "b": [true, null]}'),
        ([], "[]"),
        ({}, "{}"),
        (("x", 2), '["x", 2]'),
    ],
)
def test_yaml_scalar_exact_text(value, text):
    assert yaml_scalar(value) == text


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, 7, -3, 2**63, 1.5, -0.0, 3.14159, 123456.789, "", "yes", "no", "on", "off", "null", "~",
     "0x1F", "012", "1e3", "3e-5", "1_000", "12:30", "2024-01-01", ".inf", "-", "? x", "@a", "`b`", "%TAG",
     {"k": "v", "n": {"deep": ["a", 1, None, False]}}, ["a", ["b", ["c"]]]],
    ids=repr,
)
def test_yaml_scalar_round_trips_through_safe_load(value):
    assert yaml.safe_load(yaml_scalar(value)) == value


def test_yaml_scalar_output_is_printable_ascii_on_one_line():
    text = yaml_scalar({"k": ["é\u2028\x85\x00\n\r\t\U0001f600", "\ufeff"]})
    assert text.isascii() and text.isprintable() and "\n" not in text


def test_yaml_scalar_int_is_not_mistaken_for_bool():
    assert yaml.safe_load(yaml_scalar(1)) == 1 and yaml.safe_load(yaml_scalar(1)) is not True


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, [1.0, math.nan], {"x": math.inf}], ids=repr)
def test_yaml_scalar_refuses_non_finite_numbers(value):
    with pytest.raises(RenderError, match="non-finite"):
        yaml_scalar(value)


@pytest.mark.parametrize("value", [b"bytes", {1, 2}, object(), 1j, frozenset(), [b"nested"]], ids=lambda v: type(v).__name__)
def test_yaml_scalar_refuses_unsupported_types(value):
    with pytest.raises(RenderError, match="cannot write a"):
        yaml_scalar(value)


# Regression: repr(1e-05) has no '.', which PyYAML's YAML 1.1 rule would read back as a string.
@pytest.mark.parametrize("value", [1e-05, 1e16, -3e-10, 1e100], ids=repr)
def test_yaml_scalar_round_trips_floats_in_exponent_notation(value):
    parsed = yaml.safe_load(yaml_scalar(value))
    assert isinstance(parsed, float) and parsed == value


@pytest.mark.parametrize("stack", ["team-vision", "team-nlp"])
def test_the_names_the_collision_rule_compares_are_the_rendered_ones(stack):
    """spec.generated_objects (what the contract keeps distinct across workloads) holds every object a
    workload renders, and, for a JobSet, the Job its controller makes per replicated job."""
    from cloudml.stackfile import load_stack_file
    from components.spec import generated_objects
    from conftest import STACKS

    spec = load_team(load_stack_file(STACKS, stack).config["cloudml:team"])
    view = fixture_platform_view(spec.name)
    for workload in spec.workloads:
        rendered = render(workload.kind, WorkloadContext(spec, workload, view))
        names = {(o["kind"], o["metadata"]["name"]) for o in rendered}
        for jobset in (o for o in rendered if o["kind"] == "JobSet"):
            names |= {("Job", f"{jobset['metadata']['name']}-{rj['name']}-0") for rj in jobset["spec"]["replicatedJobs"]}
        expected = generated_objects(workload)
        if workload.kind == "devEnvironment":
            names.add(("Secret", f"{workload.name}-token"))  # made by the Team component, not the template
        if workload.kind == "distributedTraining":
            names.add(("Service", workload.name))  # JobSet's headless Service, named after the JobSet
        assert names == expected, workload.name
