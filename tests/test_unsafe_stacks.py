"""Deliberately unsafe stacks under tests/unsafe_stacks/ each make `cloudml plan` exit 1 naming
exactly their rule, and `cloudml plan --project` plans another Pulumi Python program.

Every project directory there is a real Pulumi project (Pulumi.yaml, __main__.py, a stack file),
so `pulumi preview --policy-pack policies` refuses it too; `cloudml plan <case> --project <dir>`
runs its program under the same mocks and rules as cloudml's own stacks. Each is safe except for one
thing, so the set of mandatory rules it breaks is exactly the expected one.
"""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from cloudml.cli import app
from conftest import REPO

UNSAFE = REPO / "tests" / "unsafe_stacks"
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# case directory -> the one mandatory rule it breaks
PROJECT_CASES = {
    "privileged-pod": "pod-security-restricted",
    "public-bucket": "s3-bucket-public-access-blocked",
    "gpu-without-limits": "gpu-resources",
    "wildcard-iam": "iam-no-wildcards",
    "quota-missing": "team-namespace-gpu-quota",
}


def cli(*args):
    result = CliRunner().invoke(app, ["plan", *map(str, args)], env={"NO_COLOR": "1", "TERM": "dumb", "FORCE_COLOR": None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, ANSI.sub("", result.stdout), ANSI.sub("", result.stderr)


def mandatory_rules(plan_file) -> set[str]:
    findings = json.loads(plan_file.read_text(encoding="utf-8"))["findings"]
    return {f["rule"] for f in findings if f["level"] == "mandatory"}


def test_every_unsafe_project_has_an_expected_rule() -> None:
    """A new case directory cannot go untested: each one is listed with the rule it must break."""
    on_disk = {p.parent.name for p in UNSAFE.glob("*/Pulumi.yaml")}
    assert on_disk == set(PROJECT_CASES)


@pytest.mark.parametrize(("case", "rule"), PROJECT_CASES.items(), ids=list(PROJECT_CASES))
def test_unsafe_project_exits_1_naming_exactly_its_rule(tmp_path, case, rule) -> None:
    code, out, err = cli(case, "--project", UNSAFE / case, "--out", tmp_path)
    assert code == 1, out + err
    assert f"[mandatory] {rule}:" in out
    assert f"(program of project unsafe-{case})" in out
    assert err == (f"Policy: mandatory violations in stack(s) {case}; see the findings above (each with its fix) "
                   "or in plan.json `findings`.\n")
    plan_file = tmp_path / case / "plan.json"
    assert mandatory_rules(plan_file) == {rule}
    assert json.loads(plan_file.read_text(encoding="utf-8"))["project"] == f"unsafe-{case}"


def test_public_endpoint_stack_file_exits_1_naming_exactly_its_rule(tmp_path) -> None:
    """The one unsafe case cloudml's own contract can express (an explicit opt-in to a world-open
    endpoint): a stack file of the cloudml project."""
    code, out, _ = cli("platform-public-endpoint", "--stacks-dir", UNSAFE, "--out", tmp_path)
    assert code == 1
    assert "[mandatory] eks-endpoint-restricted:" in out
    assert mandatory_rules(tmp_path / "platform-public-endpoint" / "plan.json") == {"eks-endpoint-restricted"}


def test_project_stacks_come_from_its_stack_config_dir_and_all_plans_them(tmp_path) -> None:
    project = tmp_path / "extra"
    (project / "stacks").mkdir(parents=True)
    (project / "Pulumi.yaml").write_text("name: extra\nruntime: python\nstackConfigDir: stacks\n", encoding="utf-8")
    (project / "__main__.py").write_text(
        "import pulumi\nimport pulumi_kubernetes as k8s\n"
        "k8s.core.v1.ConfigMap('settings', metadata={'name': 'settings', 'namespace': 'cloudml-system'},"
        " data={'region': pulumi.Config('aws').require('region')})\n",
        encoding="utf-8",
    )
    wanted = {"a": "eu-west-1", "b": "eu-west-2"}
    for name, region in wanted.items():
        (project / "stacks" / f"Pulumi.{name}.yaml").write_text(f"config:\n  aws:region: {region}\n", encoding="utf-8")
    code, out, err = cli("--all", "--project", project, "--out", tmp_path / "out")
    assert (code, err) == (0, ""), out
    regions = {}
    for name in ("a", "b"):
        plan = json.loads((tmp_path / "out" / name / "plan.json").read_text(encoding="utf-8"))
        [config_map] = plan["kubernetesObjects"]
        regions[name] = config_map["object"]["data"]["region"]
        assert (plan["project"], plan["kind"]) == ("extra", "program")
    # Each stack's own config reached the program: the stacks were run apart.
    assert regions == wanted


@pytest.mark.parametrize(("files", "problem"), [
    ({}, "cannot be read (No such file or directory). Fix: pass --project a directory holding a Pulumi.yaml (a Pulumi project)"),
    ({"Pulumi.yaml": "name: x\nruntime: nodejs\n", "__main__.py": ""},
     'runtime: is not python; the offline plan runs Python programs only (got "nodejs"). '
     "Fix: plan a Python Pulumi program (runtime: python)"),
    ({"Pulumi.yaml": "runtime: python\n", "__main__.py": ""}, "name: is required (got null). Fix: name the project"),
    ({"Pulumi.yaml": "name: x\nruntime: python\nmain: src/\n"}, "main: leads to "),
])
def test_invalid_project_is_exit_2_naming_the_file_and_the_fix(tmp_path, files, problem) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    code, out, err = cli("dev", "--project", tmp_path, "--out", tmp_path / "out")
    assert (code, out) == (2, "")
    assert err.startswith(f"project {tmp_path}: ")
    assert problem in " ".join(err.split())
    assert not (tmp_path / "out").exists()


def test_project_and_stacks_dir_together_are_refused(tmp_path) -> None:
    code, _, err = cli("x", "--project", UNSAFE / "privileged-pod", "--stacks-dir", tmp_path, "--out", tmp_path)
    assert code == 2
    assert "Pass --project or --stacks-dir, not both" in err


def test_a_failing_program_is_reported_as_its_own_failure_not_cloudmls(tmp_path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: broken\nruntime: python\n", encoding="utf-8")
    (tmp_path / "__main__.py").write_text("raise ValueError('no bucket name given')\n", encoding="utf-8")
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n", encoding="utf-8")
    code, out, err = cli("dev", "--project", tmp_path, "--out", tmp_path / "out")
    assert (code, out) == (3, "")
    assert err.startswith(f"the program of project broken ({tmp_path / '__main__.py'}) failed while planning dev: "
                          "ValueError: no bucket name given")
    assert "report it" not in err


def test_a_projects_own_modules_are_imported_afresh_for_each_stack_and_cwd_is_kept_for_applies(tmp_path) -> None:
    """A module the program imports from its directory declares resources at import time: each stack
    of `--all` must get them (not a cached module from the stack before), and an apply that runs
    after the program returned still sees the program's directory as its working directory."""
    project = tmp_path / "proj"
    project.mkdir()
    (project / "Pulumi.yaml").write_text("name: proj\nruntime: python\n", encoding="utf-8")
    (project / "shared_settings.py").write_text(
        "import pulumi, pulumi_kubernetes as k8s\n"
        "k8s.core.v1.ConfigMap('settings', metadata={'name': 'settings', 'namespace': 'cloudml-system'},"
        " data={'stack': pulumi.get_stack()})\n", encoding="utf-8")
    (project / "motd.txt").write_text("hello\n", encoding="utf-8")
    (project / "__main__.py").write_text(
        "import pulumi, pulumi_kubernetes as k8s\nimport shared_settings\n"
        "text = pulumi.Output.from_input('motd.txt').apply(lambda p: open(p, encoding='utf-8').read().strip())\n"
        "k8s.core.v1.ConfigMap('motd', metadata={'name': 'motd', 'namespace': 'cloudml-system'}, data={'motd': text})\n",
        encoding="utf-8")
    for name in ("one", "two"):
        (project / f"Pulumi.{name}.yaml").write_text("config: {}\n", encoding="utf-8")
    code, out, err = cli("--all", "--project", project, "--out", tmp_path / "out")
    assert (code, err) == (0, ""), out
    for name in ("one", "two"):
        plan = json.loads((tmp_path / "out" / name / "plan.json").read_text(encoding="utf-8"))
        data = {o["object"]["metadata"]["name"]: o["object"]["data"] for o in plan["kubernetesObjects"]}
        assert data == {"settings": {"stack": name}, "motd": {"motd": "hello"}}
    assert "shared_settings" not in __import__("sys").modules
