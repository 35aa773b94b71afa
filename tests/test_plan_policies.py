"""`cloudml plan` enforces the guardrails: findings in plan.json, the report, exit codes, settings.

- `planned_resources`: every ConfigGroup object becomes a resource named and parented as
  pulumi-kubernetes' yaml/v2 registers it.
- With small fake rules (monkeypatched in as `policies.rules.RULES`): the exact report lines,
  plan.json `findings` and `summary.policy`, `--format json`, exit 0 / 1 / 2, `--policy-config`
  (pack config keys, per-rule levels, and every kind of error in the file).
- With the real rules: the sample stacks plan with zero mandatory violations, and a minimal unsafe
  change injected into a sample stack's planned resources exits 1 naming its rule (the unsafe
  stacks under tests/unsafe_stacks/ are tests/test_unsafe_stacks.py's).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cloudml.plan as plan_module
import policies.rules
from cloudml.cli import app
from cloudml.plan import CONFIG_GROUP, StackPlan, planned_resources
from conftest import REPO, STACKS, sample_config, write_stack
from policies.core import ADVISORY, MANDATORY, Finding, PlannedResource, ResourceRule, StackRule

UNSAFE = REPO / "tests" / "unsafe_stacks"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
JOB = "kubernetes:batch/v1:Job"
BASELINE = "vision-resnet-baseline:team-vision/resnet-baseline"


def cli(*args):
    result = CliRunner().invoke(app, ["plan", *map(str, args)], env={"NO_COLOR": "1", "TERM": "dumb", "FORCE_COLOR": None})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, ANSI.sub("", result.stdout), ANSI.sub("", result.stderr)


# --- planned_resources ---------------------------------------------------------------------------


def test_config_group_objects_become_resources_of_their_own(sample_plans) -> None:
    plan = sample_plans["team-vision"]
    resources = planned_resources(plan)
    groups = {r["urn"]: r for r in plan.resources if r["type"] == CONFIG_GROUP}
    in_groups = [o for o in plan.objects if o.source in groups]
    assert len(resources) == len(plan.resources) + len(in_groups)
    job = next(r for r in resources if r.name == BASELINE)
    group = groups[job.parent]
    assert (job.type, group["name"]) == (JOB, "vision-resnet-baseline")
    assert job.urn == ("urn:pulumi:team-vision::cloudml::cloudml:team:Team$kubernetes:yaml/v2:ConfigGroup"
                       f"$kubernetes:batch/v1:Job::{BASELINE}")
    assert job.props == next(o.object for o in in_groups if o.source == group["urn"] and o.object["kind"] == "Job")
    assert job.stack == "team-vision"
    # A Kubernetes resource of its own (the token Secret) is listed once, as recorded.
    secrets = [r for r in resources if r.type == "kubernetes:core/v1:Secret"]
    assert len(secrets) == sum(1 for r in plan.resources if r["type"] == "kubernetes:core/v1:Secret")


def test_cluster_scoped_objects_are_named_without_a_namespace(sample_plans) -> None:
    names = {r.name for r in planned_resources(sample_plans["platform-dev"]) if r.type == "kubernetes:core/v1:Namespace"}
    assert "ml-dev-tenancy-vision:team-vision" in names


def test_plan_json_document_gives_the_same_resources(sample_plans) -> None:
    plan = sample_plans["team-vision"]
    document = json.loads(plan_module.plan_json(plan))
    assert planned_resources(document) == planned_resources(plan)


# --- fake rules through the CLI ------------------------------------------------------------------


def _no_baseline(resource: PlannedResource, config):
    if resource.name == BASELINE:
        yield Finding("metadata.name is resnet-baseline", "rename it")


def _stack_reference(resources: list[PlannedResource], config):
    for r in resources:
        if r.type == "pulumi:pulumi:StackReference":
            yield r, Finding(f"reads {r.name}", "be careful")


def _node_cap(resource: PlannedResource, config):
    size = (resource.props.get("scalingConfig") or {}).get("maxSize", 0)
    if size > config.max_gpu_pool_nodes:
        yield Finding(f"scalingConfig.maxSize is {size}", f"use {config.max_gpu_pool_nodes} or less")


FAKE_RULES = [
    ResourceRule("fake-no-baseline", "No baseline.", MANDATORY, ("kubernetes:batch/*:Job",), _no_baseline, "none"),
    StackRule("fake-stack-reference", "Careful with references.", ADVISORY, _stack_reference, "disable it"),
    ResourceRule("fake-node-cap", "Node groups within the cap.", MANDATORY, ("aws:eks/nodeGroup:NodeGroup",), _node_cap, "raise it",
                 config_keys=("maxGpuPoolNodes",)),
]


@pytest.fixture
def fake_rules(monkeypatch):
    monkeypatch.setattr(policies.rules, "RULES", FAKE_RULES)
    return FAKE_RULES


def settings_file(tmp_path: Path, data, suffix: str = ".yaml") -> Path:
    path = tmp_path / f"policy{suffix}"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_findings_are_printed_grouped_by_resource_with_their_fix(fake_rules, tmp_path) -> None:
    code, out, err = cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path)
    assert code == 1
    expected = [
        f"{JOB} {BASELINE}",
        "  [mandatory] fake-no-baseline: metadata.name is resnet-baseline",
        "      fix: rename it",
        "pulumi:pulumi:StackReference vision-platform",
        "  [advisory] fake-stack-reference: reads vision-platform",
        "      fix: be careful",
        "Policy: 1 mandatory, 1 advisory violation(s)",
    ]
    lines = out.splitlines()
    start = lines.index(expected[0])
    assert lines[start:start + len(expected)] == expected
    assert lines.index(expected[0]) > next(i for i, l in enumerate(lines) if l.startswith("GPU budget:"))
    assert err == ("Policy: mandatory violations in stack(s) team-vision; see the findings above (each with its fix) "
                   "or in plan.json `findings`.\n")


def test_findings_are_in_plan_json_and_the_summary(fake_rules, tmp_path) -> None:
    cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path)
    plan = json.loads((tmp_path / "team-vision/plan.json").read_text(encoding="utf-8"))
    job_urn = f"urn:pulumi:team-vision::cloudml::cloudml:team:Team$kubernetes:yaml/v2:ConfigGroup$kubernetes:batch/v1:Job::{BASELINE}"
    assert plan["findings"] == [
        {"rule": "fake-no-baseline", "level": "mandatory", "resourceType": JOB, "resourceName": BASELINE, "urn": job_urn,
         "message": "metadata.name is resnet-baseline", "fix": "rename it"},
        {"rule": "fake-stack-reference", "level": "advisory", "resourceType": "pulumi:pulumi:StackReference",
         "resourceName": "vision-platform",
         "urn": "urn:pulumi:team-vision::cloudml::cloudml:team:Team$pulumi:pulumi:StackReference::vision-platform",
         "message": "reads vision-platform", "fix": "be careful"},
    ]
    assert plan["summary"]["policy"] == {"rules": 3, "mandatory": 1, "advisory": 1}


def test_format_json_carries_the_findings(fake_rules, tmp_path) -> None:
    code, out, _ = cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path, "--format", "json")
    assert code == 1
    [stack] = json.loads(out)["stacks"]
    assert [f["rule"] for f in stack["findings"]] == ["fake-no-baseline", "fake-stack-reference"]
    assert stack["findings"] == json.loads((tmp_path / "team-vision/plan.json").read_text(encoding="utf-8"))["findings"]


def test_no_violations_is_exit_0_with_the_rule_count(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(policies.rules, "RULES", FAKE_RULES[2:])
    code, out, err = cli("platform-dev", "--stacks-dir", STACKS, "--out", tmp_path)
    assert (code, err) == (0, "")
    assert "Policy: no violations (1 rules)" in out.splitlines()


def test_advisory_findings_alone_are_exit_0(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(policies.rules, "RULES", FAKE_RULES[1:2])
    code, out, err = cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path)
    assert (code, err) == (0, "")
    assert "Policy: 0 mandatory, 1 advisory violation(s)" in out.splitlines()


@pytest.mark.parametrize(("levels", "code", "summary"), [
    ({"fake-no-baseline": "advisory"}, 0, "Policy: 0 mandatory, 2 advisory violation(s)"),
    ({"fake-no-baseline": "disabled", "fake-stack-reference": "disabled"}, 0, "Policy: no violations (1 rules)"),
    ({"fake-no-baseline": "disabled", "fake-stack-reference": "mandatory"}, 1, "Policy: 1 mandatory, 0 advisory violation(s)"),
])
def test_rule_levels_are_overridden_by_the_settings_file(fake_rules, tmp_path, levels, code, summary) -> None:
    config = settings_file(tmp_path, {"rules": levels}, ".json")
    result, out, _ = cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path / "out", "--policy-config", config)
    assert result == code
    assert summary in out.splitlines()


def test_pack_config_keys_reach_the_rules(fake_rules, tmp_path) -> None:
    # platform-dev's largest GPU pool (l4-spot) has max 8 nodes: within the default cap of 16.
    assert cli("platform-dev", "--stacks-dir", STACKS, "--out", tmp_path / "a")[0] == 0
    config = settings_file(tmp_path, "# the org's settings\nmaxGpuPoolNodes: 4\n")
    code, out, _ = cli("platform-dev", "--stacks-dir", STACKS, "--out", tmp_path / "b", "--policy-config", config)
    assert code == 1
    assert "  [mandatory] fake-node-cap: scalingConfig.maxSize is 8" in out.splitlines()
    assert "      fix: use 4 or less" in out.splitlines()


def test_invalid_stack_wins_over_a_policy_failure(fake_rules, tmp_path) -> None:
    stacks = tmp_path / "stacks"
    for name in ("platform-dev", "team-vision"):
        write_stack(stacks, name, sample_config(name))
    broken = copy.deepcopy(sample_config("team-vision"))
    broken["cloudml:team"]["workloads"][0]["gpus"] = -1
    write_stack(stacks, "team-broken", broken)
    code, _, err = cli("--all", "--stacks-dir", stacks, "--out", tmp_path / "out")
    assert code == 2
    assert "stack team-broken:" in err
    assert "Policy: mandatory violations in stack(s) team-vision;" in err
    assert (tmp_path / "out/team-vision/plan.json").is_file()


@pytest.mark.parametrize(("content", "suffix", "problem"), [
    ({"maxGpuPoolNode": 3}, ".json",
     "  - maxGpuPoolNode: unknown key (got 3). Fix: did you mean `maxGpuPoolNodes`? remove it or use one of: "
     "allowedRegistries, devStacks, maxGpuPoolNodes, productionStacks, rules, teamNamespacePrefix"),
    ("maxGpuPoolNodes: 0\n", ".yaml",
     "  - maxGpuPoolNodes: input should be greater than or equal to 1 (got 0). Fix: use 1 or more: "
     "the largest max size a GPU node group may have."),
    ({"rules": {"fake-no-baselin": "advisory"}}, ".json",
     "  - rules.fake-no-baselin: is not a rule of the pack. Fix: did you mean `fake-no-baseline`? use one of: "
     "fake-no-baseline, fake-stack-reference, fake-node-cap"),
    ({"rules": {"fake-node-cap": "warn"}}, ".json",
     "  - rules.fake-node-cap: input should be 'disabled', 'advisory' or 'mandatory' (got \"warn\"). "
     "Fix: use one of 'disabled', 'advisory' or 'mandatory'"),
    ("- maxGpuPoolNodes: 3\n", ".yaml",
     '  - (file): must be a mapping of settings (got [{"maxGpuPoolNodes": 3}]). Fix: write keys such as '
     "maxGpuPoolNodes: 8 and rules: {...}"),
    ("{not json", ".json", None),
])
def test_invalid_settings_file_is_exit_2_naming_file_key_value_and_fix(fake_rules, tmp_path, content, suffix, problem) -> None:
    config = settings_file(tmp_path, content, suffix)
    code, out, err = cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path / "out", "--policy-config", config)
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert lines[0] == f"policy config {config}: 1 problem:"
    if problem is None:
        assert lines[1].startswith("  - (file): is not valid JSON (") and lines[1].endswith("Fix: fix the syntax")
    else:
        assert lines[1:] == [problem]
    assert not (tmp_path / "out").exists(), "nothing is planned with invalid settings"


@pytest.mark.parametrize(("content", "problem"), [
    ({"maxGpuPoolNodes": True}, "  - maxGpuPoolNodes: input should be a valid integer (got true). Fix: use a whole number: "
                                "the largest max size a GPU node group may have."),
    ({"maxGpuPoolNodes": "8"}, '  - maxGpuPoolNodes: input should be a valid integer (got "8"). Fix: use a whole number: '
                               "the largest max size a GPU node group may have."),
    ({"maxGpuPoolNodes": 8.0}, "  - maxGpuPoolNodes: input should be a valid integer (got 8.0). Fix: use a whole number: "
                               "the largest max size a GPU node group may have."),
    ({"teamNamespacePrefix": 7}, "  - teamNamespacePrefix: input should be a valid string (got 7). Fix: use a string "
                                 "(quote it in YAML if it looks like a number or a boolean): namespaces of team workloads start with this."),
])
def test_settings_are_strictly_typed(fake_rules, tmp_path, content, problem) -> None:
    config = settings_file(tmp_path, content, ".json")
    code, out, err = cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path / "out", "--policy-config", config)
    assert (code, out, err.splitlines()[1:]) == (2, "", [problem])


def test_settings_file_that_is_not_utf8_is_exit_2_naming_the_file(fake_rules, tmp_path) -> None:
    config = tmp_path / "policy.yaml"
    config.write_bytes(b"maxGpuPoolNodes: 8 # caf\xe9\n")
    code, out, err = cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path / "out", "--policy-config", config)
    assert (code, out) == (2, "")
    assert err.splitlines() == [
        f"policy config {config}: 1 problem:",
        "  - (file): is not UTF-8 text (byte 0xe9 at offset 24). Fix: save the file as UTF-8"]


def test_format_json_with_invalid_settings_prints_the_one_envelope(fake_rules, tmp_path) -> None:
    config = settings_file(tmp_path, {"maxGpuPoolNodes": 0}, ".json")
    code, out, err = cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path / "out", "--policy-config", config,
                         "--format", "json")
    assert code == 2
    assert json.loads(out) == {"stacks": [], "invalid": [{"policyConfig": str(config), "problems": [{
        "path": "maxGpuPoolNodes", "message": "input should be greater than or equal to 1",
        "fix": "use 1 or more: the largest max size a GPU node group may have.", "value": "0"}]}]}
    assert err.splitlines()[0] == f"policy config {config}: 1 problem:"


def test_missing_settings_file_is_exit_2(fake_rules, tmp_path) -> None:
    code, _, err = cli("team-vision", "--stacks-dir", STACKS, "--out", tmp_path, "--policy-config", tmp_path / "nope.yaml")
    assert code == 2
    assert err.splitlines()[1] == "  - (file): cannot be read (No such file or directory). Fix: pass an existing YAML or JSON file"


def test_settings_convert_to_pack_config_on_the_command_line(fake_rules, tmp_path, capsys) -> None:
    from policies import settings

    config = settings_file(tmp_path, {"maxGpuPoolNodes": 4, "rules": {"fake-stack-reference": "disabled"}}, ".json")
    assert settings.main([str(config)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "fake-node-cap": {"maxGpuPoolNodes": 4}, "fake-stack-reference": {"enforcementLevel": "disabled"}}
    assert settings.main([]) == 2


# --- the real rules ------------------------------------------------------------------------------


def new_mandatory_rules(findings: list[dict], baseline: list[dict]) -> set[str]:
    """The rules of the mandatory findings that the safe sample plan does not have."""
    def key(f: dict) -> tuple:
        return f["rule"], f["resourceType"], f["resourceName"].replace("ml-open", "ml-dev"), f["message"]
    known = {key(f) for f in baseline}
    return {f["rule"] for f in findings if f["level"] == MANDATORY and key(f) not in known}


@pytest.mark.parametrize("stack", ["platform-dev", "team-vision", "team-nlp"])
def test_sample_stacks_have_no_mandatory_violation(sample_plans, stack) -> None:
    found = [f for f in sample_plans[stack].findings if f["level"] == MANDATORY]
    assert found == []


def test_public_endpoint_opt_out_is_the_rule_level_in_the_policy_settings(tmp_path) -> None:
    """The reviewed opt-out of a world-open endpoint: the rule's level lowered in the settings file."""
    config = settings_file(tmp_path, {"rules": {"eks-endpoint-restricted": "advisory"}})
    code, out, err = cli("platform-public-endpoint", "--stacks-dir", UNSAFE, "--out", tmp_path / "out", "--policy-config", config)
    assert code == 0, err
    assert "[advisory] eks-endpoint-restricted:" in out


def _with(name: str, type_: str, change):
    """A mutation: `change(props)` on the planned resource of that name and type (a deep copy)."""
    def mutate(resources: list[PlannedResource]) -> list[PlannedResource]:
        [target] = [r for r in resources if r.name == name and r.type == type_]
        props = copy.deepcopy(dict(target.props))
        change(props)
        return [replace(r, props=props) if r is target else r for r in resources]
    return mutate


def _without(name: str, type_: str):
    def mutate(resources: list[PlannedResource]) -> list[PlannedResource]:
        kept = [r for r in resources if not (r.name == name and r.type == type_)]
        assert len(kept) == len(resources) - 1
        return kept
    return mutate


def _privileged(props):
    props["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True


def _no_gpu_limit(props):
    del props["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]


def _public_bucket(props):
    props.update(blockPublicPolicy=False, restrictPublicBuckets=False)


def _wildcard_policy(props):
    props["policy"] = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})


INJECTED = [
    ("team-vision", _with(BASELINE, JOB, _privileged), "pod-security-restricted"),
    ("team-vision", _with(BASELINE, JOB, _no_gpu_limit), "gpu-resources"),
    ("platform-dev", _with("ml-dev-storage-datasets-public-access-block",
                           "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", _public_bucket),
     "s3-bucket-public-access-blocked"),
    ("platform-dev", _with("ml-dev-tenancy-vision-irsa-policy", "aws:iam/rolePolicy:RolePolicy", _wildcard_policy),
     "iam-no-wildcards"),
    ("platform-dev", _without("ml-dev-tenancy-vision:team-vision/vision-quota", "kubernetes:core/v1:ResourceQuota"),
     "team-namespace-gpu-quota"),
]


@pytest.mark.parametrize(("stack", "mutate", "rule"), INJECTED, ids=[case[2] for case in INJECTED])
def test_injected_unsafe_change_fails_its_rule(sample_plans, monkeypatch, tmp_path, stack, mutate, rule) -> None:
    """The smallest unsafe change to what cloudml's own components produce (the contract cannot
    express it): a sample stack is planned and the change is injected into its planned resources
    (`cloudml.plan.planned_resources`), then `cloudml plan` runs end to end."""
    original = plan_module.planned_resources

    def injected(plan: StackPlan | dict):
        resources = original(plan)
        return mutate(resources) if (plan.stack if isinstance(plan, StackPlan) else plan["stack"]) == stack else resources

    monkeypatch.setattr(plan_module, "planned_resources", injected)
    code, out, err = cli(stack, "--stacks-dir", STACKS, "--out", tmp_path)
    assert code == 1
    assert f"[mandatory] {rule}:" in out
    assert f"stack(s) {stack};" in err
    plan = json.loads((tmp_path / stack / "plan.json").read_text(encoding="utf-8"))
    assert new_mandatory_rules(plan["findings"], sample_plans[stack].findings) == {rule}
