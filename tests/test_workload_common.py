"""The pieces every workload kind shares, tested for what they do rather than how they look:
`render.wrap_command` run for real by /bin/sh, `render.data_volumes`, `render.user_env` and
`workloads.common.run_env` (expanded the way the kubelet expands `$(VAR)`).

`expand_env` here is the kubelet's env resolution in miniature; the kind tests import it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tf_config import expand
from components.render import WorkloadContext, data_volumes, user_env, wrap_command
from components.spec import load_team
from components.workloads.common import run_env
from workload_fixtures import BUCKETS, VOLUME_CLAIMS, platform_view, render_workload, team_config

PRINT_ARGV = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
PRINT_PID = [sys.executable, "-c", "import os; print(os.getpid())"]


def expand_env(env: list[dict], fields: dict[str, str]) -> dict[str, str]:
    """name -> value of a container's env as the kubelet resolves it: `valueFrom.fieldRef` from the
    pod's fields (`fields`: fieldPath -> value), and `$(NAME)` in a value replaced by an earlier
    variable's value (unknown names stay as written, `$$` is a literal `$`)."""
    resolved: dict[str, str] = {}
    for var in env:
        if "valueFrom" in var:
            resolved[var["name"]] = fields[var["valueFrom"]["fieldRef"]["fieldPath"]]
            continue

        def substitute(match: re.Match) -> str:
            if match.group(0) == "$$":
                return "$"
            return resolved.get(match.group(1), match.group(0))

        resolved[var["name"]] = re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", substitute, var["value"])
    return resolved


def as_kubelet_runs(command: list[str]) -> list[str]:
    """The command as the container gets it: the kubelet expands `$(VAR)` and `$$` in it first (no
    env vars here, so only the escapes change)."""
    return [expand(part, {}) for part in command]


def run_wrapped(main: list[str], pre: list[str] = (), post: list[str] = (), **kwargs) -> subprocess.CompletedProcess:
    command, args = wrap_command(main[:1], main[1:], list(pre), list(post))
    return subprocess.run([*as_kubelet_runs(command), *args], capture_output=True, text=True, timeout=30, **kwargs)


# --- wrap_command -----------------------------------------------------------------------------


def test_without_pre_or_post_commands_the_command_is_left_as_given():
    assert wrap_command(["python", "-m", "x"], ["--a", "$(B)"], [], []) == (["python", "-m", "x"], ["--a", "$(B)"])


def test_wrapper_is_sh_dash_c_with_the_main_command_as_positional_arguments():
    command, args = wrap_command(["python", "-m", "x"], ["--lr", "0.1"], ["echo pre"], [])
    # Every `$` doubled: the kubelet turns `$$` back into `$` before the shell sees the script.
    assert command == ["/bin/sh", "-c", 'set -e\necho pre\nexec "$$@"\n', "cloudml-command"]
    assert as_kubelet_runs(command)[2] == 'set -e\necho pre\nexec "$@"\n'
    assert args == ["python", "-m", "x", "--lr", "0.1"]


@pytest.mark.parametrize("post", [[], ["echo post"]], ids=["exec", "with-post"])
def test_pre_commands_run_in_order_before_the_main_command(post):
    result = run_wrapped(["/bin/echo", "main"], pre=["echo pre-1", "echo pre-2"], post=post)
    assert result.returncode == 0
    assert result.stdout.splitlines() == ["pre-1", "pre-2", "main", *(["post"] if post else [])]


@pytest.mark.parametrize("post", [[], ["echo post"]], ids=["exec", "with-post"])
def test_a_failing_pre_command_stops_the_container_before_the_main_command_with_its_exit_code(post):
    result = run_wrapped(["/bin/echo", "main"], pre=["echo pre-1", "/bin/sh -c 'exit 4'", "echo pre-3"], post=post)
    assert result.returncode == 4
    assert result.stdout.splitlines() == ["pre-1"]


HOSTILE_ARGS = ["with space", "it's", 'say "hi"', "$HOME", "$(CLOUDML_RUN_ID)", "`id`", "a;b", "*", "", "line\nbreak", "-e", "\\n"]


@pytest.mark.parametrize("post", [[], ["true"]], ids=["exec", "with-post"])
def test_main_command_arguments_reach_it_verbatim(post):
    result = run_wrapped([*PRINT_ARGV, *HOSTILE_ARGS], pre=["true"], post=post)
    assert result.returncode == 0
    assert json.loads(result.stdout) == HOSTILE_ARGS


def test_post_commands_run_after_a_failed_main_command_which_keeps_its_exit_code():
    result = run_wrapped(["/bin/sh", "-c", "echo main; exit 3"], post=['echo "post saw $CLOUDML_EXIT_CODE"', "echo post-2"])
    assert result.returncode == 3
    assert result.stdout.splitlines() == ["main", "post saw 3", "post-2"]


def test_post_commands_see_exit_code_0_after_success_and_the_container_exits_0():
    result = run_wrapped(["/bin/echo", "main"], post=['echo "post saw $CLOUDML_EXIT_CODE"'])
    assert (result.returncode, result.stdout.splitlines()) == (0, ["main", "post saw 0"])


def test_exit_code_is_visible_to_child_processes_of_post_commands():
    """CLOUDML_EXIT_CODE is exported, so a script called by a post command reads it too."""
    result = run_wrapped(["/bin/sh", "-c", "exit 9"], post=["/bin/sh -c 'echo child saw $CLOUDML_EXIT_CODE'"])
    assert (result.returncode, result.stdout) == (9, "child saw 9\n")


def test_a_failing_post_command_neither_stops_later_ones_nor_changes_the_exit_code():
    result = run_wrapped(["/bin/echo", "main"], post=["exit_code_of_this_is_127_not_found 2>/dev/null", "false", "echo last"])
    assert (result.returncode, result.stdout.splitlines()) == (0, ["main", "last"])


def test_without_post_commands_the_main_command_replaces_the_shell():
    """exec: the main command is the container's process itself, so it gets SIGTERM directly."""
    command, args = wrap_command(PRINT_PID[:1], PRINT_PID[1:], ["true"], [])
    process = subprocess.Popen([*as_kubelet_runs(command), *args], stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=30)
    assert int(out) == process.pid


def test_with_post_commands_the_main_command_is_a_child_of_the_shell():
    command, args = wrap_command(PRINT_PID[:1], PRINT_PID[1:], [], ["true"])
    process = subprocess.Popen([*as_kubelet_runs(command), *args], stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=30)
    assert process.returncode == 0 and int(out) != process.pid


TERM_AWARE_MAIN = [
    sys.executable, "-c",
    "import signal, sys, time\n"
    "def stop(signum, frame):\n"
    "    print('main got', signum, flush=True); sys.exit(7)\n"
    "signal.signal(signal.SIGTERM, stop)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
    "print('not stopped', flush=True)\n",
]


@pytest.mark.parametrize("attempt", range(3))
def test_sigterm_to_the_wrapper_is_forwarded_to_the_main_command_then_post_runs_with_its_exit_code(attempt):
    """Kubernetes stops a container by sending SIGTERM to its first process, the shell: the main
    command must get it, and post commands still run with the main command's own exit code."""
    command, args = wrap_command(TERM_AWARE_MAIN[:1], TERM_AWARE_MAIN[1:], [], ['echo "post saw $CLOUDML_EXIT_CODE"'])
    process = subprocess.Popen([*as_kubelet_runs(command), *args], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        time.sleep(0.1)  # the shell reaches `wait` right after starting the child
        os.kill(process.pid, signal.SIGTERM)  # the shell only, not its process group
        out, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert out.splitlines() == [f"main got {int(signal.SIGTERM)}", "post saw 7"]
    assert process.returncode == 7


# --- data_volumes -----------------------------------------------------------------------------


def _workload(**fields) -> object:
    spec = load_team(team_config({"kind": "training", "name": "job", "command": ["x"], **fields}))
    return spec.workloads[0]


def test_data_volumes_one_pod_volume_per_source_bound_to_the_platforms_claims():
    workload = _workload(volumes=[
        {"source": "datasets", "mountPath": "/data/train", "subPath": "imagenet/train"},
        {"source": "shared", "mountPath": "/mnt/shared"},
        {"source": "datasets", "mountPath": "/data/val", "subPath": "imagenet/val"},
        {"source": "models", "mountPath": "/models"},
        {"source": "shared", "mountPath": "/mnt/ro", "subPath": "ref", "readOnly": True},
    ])
    pod_volumes, mounts = data_volumes(workload, VOLUME_CLAIMS)
    assert pod_volumes == [
        {"name": "data-datasets", "persistentVolumeClaim": {"claimName": "claim-datasets", "readOnly": True}},
        {"name": "data-shared", "persistentVolumeClaim": {"claimName": "claim-shared"}},
        {"name": "data-models", "persistentVolumeClaim": {"claimName": "claim-models", "readOnly": True}},
    ]
    assert mounts == [
        {"name": "data-datasets", "mountPath": "/data/train", "readOnly": True, "subPath": "imagenet/train"},
        {"name": "data-shared", "mountPath": "/mnt/shared", "readOnly": False},
        {"name": "data-datasets", "mountPath": "/data/val", "readOnly": True, "subPath": "imagenet/val"},
        {"name": "data-models", "mountPath": "/models", "readOnly": True},
        {"name": "data-shared", "mountPath": "/mnt/ro", "readOnly": True, "subPath": "ref"},
    ]


def test_data_volumes_of_a_workload_without_mounts_are_empty():
    assert data_volumes(_workload(), VOLUME_CLAIMS) == ([], [])


def test_bucket_mounts_are_read_only_in_the_claim_and_the_mount_of_a_rendered_pod():
    [job] = render_workload({"kind": "training", "name": "job", "command": ["x"],
                             "volumes": [{"source": "logs", "mountPath": "/logs"}]})
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "data-logs", "persistentVolumeClaim": {"claimName": "claim-logs", "readOnly": True}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "data-logs", "mountPath": "/logs", "readOnly": True}]


# --- user_env ---------------------------------------------------------------------------------


def test_user_env_is_plain_values_in_order_then_secret_references_in_order():
    spec = load_team(team_config(
        {"kind": "training", "name": "job", "command": ["x"],
         "env": {"Z_LAST": "1", "A_FIRST": "two words", "EMPTY": ""},
         "secretEnv": {"WANDB_API_KEY": {"secret": "wandb", "key": "api-key"}, "DB_PASSWORD": {"secret": "db", "key": "password"}}},
        secrets={"wandb": {"api-key": "s3cr3t"}, "db": {"password": "hunter2"}},
    ))
    assert user_env(spec.workloads[0]) == [
        {"name": "Z_LAST", "value": "1"},
        {"name": "A_FIRST", "value": "two words"},
        {"name": "EMPTY", "value": ""},
        {"name": "WANDB_API_KEY", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "api-key"}}},
        {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
    ]


def test_user_env_never_holds_a_secret_value():
    spec = load_team(team_config(
        {"kind": "training", "name": "job", "command": ["x"], "secretEnv": {"TOKEN": {"secret": "hub", "key": "token"}}},
        secrets={"hub": {"token": "never-in-a-manifest"}},
    ))
    assert "never-in-a-manifest" not in repr(user_env(spec.workloads[0]))


# --- run_env ----------------------------------------------------------------------------------


def _context(**fields) -> WorkloadContext:
    spec = load_team(team_config({"kind": "training", "name": "resnet", "command": ["x"], **fields}))
    return WorkloadContext(spec, spec.workloads[0], platform_view())


def test_run_env_exact_list_with_the_run_id_from_the_jobs_controller_uid_label():
    assert run_env(_context(), model="resnet-v2") == [
        {"name": "CLOUDML_TEAM", "value": "vision"},
        {"name": "CLOUDML_WORKLOAD", "value": "resnet"},
        {"name": "CLOUDML_RUN_ID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['batch.kubernetes.io/controller-uid']"}}},
        {"name": "CLOUDML_CHECKPOINT_DIR", "value": f"s3://{BUCKETS['checkpoints']}/vision/resnet/$(CLOUDML_RUN_ID)/"},
        {"name": "CLOUDML_LOG_DIR", "value": f"s3://{BUCKETS['logs']}/vision/resnet/$(CLOUDML_RUN_ID)/"},
        {"name": "CLOUDML_MODEL_DIR", "value": f"s3://{BUCKETS['models']}/vision/resnet-v2/"},
    ]


def test_run_env_without_a_model_has_no_model_dir_and_takes_another_run_id_label():
    env = run_env(_context(), run_id_label="jobset.sigs.k8s.io/jobset-uid")
    assert [var["name"] for var in env] == ["CLOUDML_TEAM", "CLOUDML_WORKLOAD", "CLOUDML_RUN_ID", "CLOUDML_CHECKPOINT_DIR", "CLOUDML_LOG_DIR"]
    assert env[2]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['jobset.sigs.k8s.io/jobset-uid']"


def test_each_cronjob_run_gets_its_own_directories_through_its_job_uid():
    """Each run of a CronJob is a new Job with a new UID (label batch.kubernetes.io/controller-uid on its
    pods): the kubelet expands the directories with that UID, so yesterday's checkpoints are not resumed
    today, while a retried pod of the same run (same Job, same UID) finds its own."""
    [cron] = render_workload({"kind": "training", "name": "resnet", "command": ["x"], "schedule": "0 3 * * *"})
    env = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
    for run in ("0b6f4d1e-8f3c-4a51-9d2e-6c7a1b2c3d4e", "5e9a7c21-3b4d-4f6e-8a1b-2c3d4e5f6a7b"):
        resolved = expand_env(env, {"metadata.labels['batch.kubernetes.io/controller-uid']": run})
        assert resolved["CLOUDML_CHECKPOINT_DIR"] == f"s3://{BUCKETS['checkpoints']}/vision/resnet/{run}/"
        assert resolved["CLOUDML_LOG_DIR"] == f"s3://{BUCKETS['logs']}/vision/resnet/{run}/"
        assert resolved["CLOUDML_MODEL_DIR"] == f"s3://{BUCKETS['models']}/vision/resnet/"


def test_every_run_directory_is_under_the_teams_prefix_of_its_own_bucket():
    for var in run_env(_context(), model="m"):
        if var["name"].endswith("_DIR"):
            role = {"CLOUDML_CHECKPOINT_DIR": "checkpoints", "CLOUDML_LOG_DIR": "logs", "CLOUDML_MODEL_DIR": "models"}[var["name"]]
            assert var["value"].startswith(f"s3://{BUCKETS[role]}/vision/"), var


def test_expand_env_follows_the_kubelet_rules_it_stands_for():
    env = [{"name": "A", "value": "x"}, {"name": "B", "value": "$(A)/$(LATER)/$$(A)/$"}, {"name": "LATER", "value": "y"}]
    assert expand_env(env, {}) == {"A": "x", "B": "x/$(LATER)/$(A)/$", "LATER": "y"}


def test_shell_syntax_in_pre_and_post_commands_reaches_the_shell_as_written():
    """`$(...)`, `$$` and `$VAR` in preCommands/postCommands are shell syntax: the kubelet must not expand
    them first (the wrapper escapes every `$` for it)."""
    done = run_wrapped(["true"], pre=['echo "sub=$(echo inner) pid=$$ home=$HOME"'], post=['echo "code=$CLOUDML_EXIT_CODE"'],
                       env={"HOME": "/home/x", "PATH": "/usr/bin:/bin"})
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sub=inner pid=") and lines[0].endswith(" home=/home/x")
    assert lines[0].split("pid=")[1].split()[0].isdigit()
    assert lines[1] == "code=0"
