"""The CrossGuard pack: policies built from the rules, called the way the Pulumi engine calls them.

Each built policy's `validate` is called with real `pulumi_policy.ResourceValidationArgs` /
`StackValidationArgs` (props wrapped in the SDK's unknown-checking proxy, as the analyzer does) and
a `report_violation` that collects messages. Small fake rules pin the adapter exactly; the real rules
are checked to build, to expose the config keys they read, and to report through the pack exactly
what `cloudml plan` reports offline. `PolicyPack` itself is never constructed (it blocks forever):
`policies/__main__.py` and `PulumiPolicy.yaml` are checked as files.
"""

from __future__ import annotations

import ast
import copy
import json

import pytest
import yaml
from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from cloudml.plan import planned_resources
from conftest import REPO
from policies import doc, pack
from policies.core import ADVISORY, MANDATORY, Finding, PlannedResource, PolicyConfig, ResourceRule, StackRule, evaluate
from policies.rules import RULES
from policies.settings import PolicySettings, pack_config

JOB = "kubernetes:batch/v1:Job"
URN = "urn:pulumi:team-x::cloudml::cloudml:team:Team$kubernetes:yaml/v2:ConfigGroup$kubernetes:batch/v1:Job::x-train:team-x/train"


# --- fake rules: what the adapter must hand the rules, and how findings come back -----------------


def _seen(resource: PlannedResource, config: PolicyConfig):
    """Reports what it saw, so a test can read the adapted resource back from the message."""
    yield Finding(json.dumps({"type": resource.type, "name": resource.name, "urn": resource.urn, "props": resource.props,
                              "protect": resource.protect, "parent": resource.parent,
                              "max": config.max_gpu_pool_nodes}, sort_keys=True), "nothing")


def _cap_helper(config: PolicyConfig) -> int:
    return config.max_gpu_pool_nodes


def _capped(resource: PlannedResource, config: PolicyConfig):
    if resource.props.get("replicas", 0) > _cap_helper(config):
        yield Finding("spec.replicas is above maxGpuPoolNodes", "lower spec.replicas")


def _production_jobs(resources: list[PlannedResource], config: PolicyConfig):
    for r in resources:
        if r.type == JOB and config.is_production(r.stack):
            yield r, Finding(f"{r.name} runs in production", "move it")


SEEN = ResourceRule("seen", "Reports what it saw.", MANDATORY, ("kubernetes:batch/*:Job",), _seen, "none",
                    config_keys=("maxGpuPoolNodes",))
CAPPED = ResourceRule("capped", "Replicas within the cap.", ADVISORY, ("aws:*",), _capped, "raise maxGpuPoolNodes",
                      config_keys=("maxGpuPoolNodes",))
PRODUCTION = StackRule("production-jobs", "No Jobs in production.", MANDATORY, _production_jobs, "disable it",
                       config_keys=("productionStacks",))


def options(protect: bool = False, parent: str | None = None) -> PolicyResourceOptions:
    return PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent)


def resource_args(type_: str, props: dict, urn: str = URN, name: str = "x-train:team-x/train", config=None,
                  protect: bool = False, parent: str | None = None) -> ResourceValidationArgs:
    return ResourceValidationArgs(type_, unknown_checking_proxy(copy.deepcopy(props)), urn, name,
                                  options(protect, parent), None, config)


def run(policy, args) -> list[tuple[str, str | None]]:
    reported: list[tuple[str, str | None]] = []

    def report_violation(message: str, urn: str | None = None) -> None:
        reported.append((message, urn))

    assert policy.validate(args, report_violation) is None
    return reported


def built(rule):
    [policy] = pack.policies([rule])
    return policy


def test_policies_carry_the_rules_name_description_and_level() -> None:
    seen, capped, production = pack.policies([SEEN, CAPPED, PRODUCTION])
    assert (type(seen), seen.name, seen.description, seen.enforcement_level) == (
        ResourceValidationPolicy, "seen", "Reports what it saw.", EnforcementLevel.MANDATORY)
    assert (type(capped), capped.enforcement_level) == (ResourceValidationPolicy, EnforcementLevel.ADVISORY)
    assert (type(production), production.enforcement_level) == (StackValidationPolicy, EnforcementLevel.MANDATORY)


def test_resource_policy_hands_the_rule_plain_props_and_options() -> None:
    obj = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train", "namespace": "team-x"},
           "spec": {"template": {"spec": {"containers": [{"name": "main", "image": UNKNOWN_STRING_VALUE}]}}}}
    [(message, urn)] = run(built(SEEN), resource_args(JOB, obj, protect=True, parent="urn:parent"))
    seen = json.loads(message.removesuffix(" Fix: nothing"))
    # Plain dicts and lists (the SDK proxy would raise on the unknown image); the sentinel is kept.
    assert seen == {"type": JOB, "name": "x-train:team-x/train", "urn": URN, "props": obj, "protect": True,
                    "parent": "urn:parent", "max": 16}
    assert urn is None


def test_kubernetes_props_get_api_version_and_kind_from_the_type_token() -> None:
    [(message, _)] = run(built(SEEN), resource_args(JOB, {"metadata": {"name": "train"}}))
    assert json.loads(message.removesuffix(" Fix: nothing"))["props"] == {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train"}}


def test_violation_text_is_message_then_fix() -> None:
    policy = built(CAPPED)
    assert run(policy, resource_args("aws:eks/nodeGroup:NodeGroup", {"replicas": 17})) == [
        ("spec.replicas is above maxGpuPoolNodes Fix: lower spec.replicas", None)]
    assert run(policy, resource_args("aws:eks/nodeGroup:NodeGroup", {"replicas": 16})) == []


def test_resource_policy_ignores_types_the_rule_does_not_name() -> None:
    assert run(built(CAPPED), resource_args(JOB, {"replicas": 99})) == []


def test_policy_config_comes_from_get_config() -> None:
    policy = built(CAPPED)
    config = {"maxGpuPoolNodes": 40, "enforcementLevel": "advisory"}  # the engine's own key is ignored
    assert run(policy, resource_args("aws:eks/nodeGroup:NodeGroup", {"replicas": 17}, config=config)) == []
    assert run(policy, resource_args("aws:eks/nodeGroup:NodeGroup", {"replicas": 41}, config=config)) == [
        ("spec.replicas is above maxGpuPoolNodes Fix: lower spec.replicas", None)]


def test_stack_policy_reports_on_the_resources_urn() -> None:
    def policy_resource(urn: str, type_: str) -> PolicyResource:
        return PolicyResource(type_, unknown_checking_proxy({}), urn, urn.rsplit("::", 1)[1], options(), None, None, [], {})

    prod = "urn:pulumi:team-prod::cloudml::kubernetes:batch/v1:Job::train"
    args = StackValidationArgs([policy_resource(prod, JOB), policy_resource(prod.replace("Job", "Pod"), "kubernetes:core/v1:Pod")])
    assert run(built(PRODUCTION), args) == [("train runs in production Fix: move it", prod)]
    args = StackValidationArgs([policy_resource(prod, JOB)], config={"productionStacks": ["*live*"]})
    assert run(built(PRODUCTION), args) == []


def test_config_schema_lists_exactly_the_keys_each_rule_declares() -> None:
    assert pack.config_fields(SEEN) == ("maxGpuPoolNodes",)
    assert pack.config_fields(PRODUCTION) == ("productionStacks",)
    schema = built(CAPPED).config_schema.properties
    assert schema == {"maxGpuPoolNodes": {"default": 16, "description": "The largest max size a GPU node group may have.",
                                          "minimum": 1, "type": "integer"}}
    none = ResourceRule("plain", "No config.", MANDATORY, ("*",), lambda r, c: iter(()), "none")
    assert built(none).config_schema is None


def test_a_declared_config_key_that_is_not_a_policy_config_key_is_an_error() -> None:
    typo = ResourceRule("typo", "Typo.", MANDATORY, ("*",), lambda r, c: iter(()), "none", config_keys=("maxGpuNodes",))
    with pytest.raises(ValueError, match="^rule typo declares config_keys that are not PolicyConfig keys: maxGpuNodes$"):
        pack.config_fields(typo)


def test_every_real_policys_schema_is_its_rules_declared_keys() -> None:
    declared = {rule.name: set(rule.config_keys) for rule in RULES}
    schemas = {p.name: set(p.config_schema.properties) if p.config_schema else set() for p in pack.policies()}
    assert schemas == declared
    assert {name: keys for name, keys in declared.items() if keys} == {
        "pod-security-restricted": {"teamNamespacePrefix"}, "gpu-resources": {"teamNamespacePrefix"},
        "image-pinned-from-allowed-registry": {"allowedRegistries"},
        "team-namespace-gpu-quota": {"teamNamespacePrefix"}, "model-service-availability": {"productionStacks"},
        "gpu-pool-max-size": {"maxGpuPoolNodes"}, "dev-stack-uses-spot": {"devStacks"}}


# --- the real rules -----------------------------------------------------------------------------


def test_every_rule_builds_a_policy_with_its_level() -> None:
    policies = pack.policies()
    assert [p.name for p in policies] == [r.name for r in RULES]
    assert len({p.name for p in policies}) == len(policies), "rule names must be unique in the pack"
    for policy, rule in zip(policies, RULES):
        assert policy.enforcement_level is EnforcementLevel(rule.level)
        assert isinstance(policy, StackValidationPolicy) == isinstance(rule, StackRule)
        keys = set(policy.config_schema.properties) if policy.config_schema else set()
        assert keys == set(pack.config_fields(rule)) <= set(PolicyConfig().model_dump(by_alias=True))


def test_every_rule_has_a_name_description_and_opt_out() -> None:
    assert RULES, "policies.rules.RULES is empty"
    for rule in RULES:
        assert rule.name == rule.name.lower() and " " not in rule.name and rule.name != "all"
        assert rule.description.endswith(".") and rule.opt_out, rule.name


def test_pack_reports_what_the_offline_plan_reports(sample_plans) -> None:
    """The same resources through both paths: evaluate() offline, and each policy's validate with
    the engine's argument objects. The sample plus one privileged container, so there is something
    to report."""
    resources = [r for name in ("platform-dev", "team-vision") for r in planned_resources(sample_plans[name])]
    job = next(r for r in resources if r.type == JOB and r.props["metadata"]["namespace"].startswith("team-"))
    mutated = copy.deepcopy(dict(job.props))
    mutated["spec"]["template"]["spec"]["containers"][0]["securityContext"]["privileged"] = True
    resources = [PlannedResource(r.type, r.name, r.urn, mutated, r.protect, r.retain_on_delete, r.parent) if r is job else r
                 for r in resources]
    offline = sorted((v.rule, f"{v.message} Fix: {v.fix}", v.urn) for v in evaluate(RULES, resources))
    assert offline, "the privileged container must be reported"
    online = []
    for policy in pack.policies():
        if isinstance(policy, StackValidationPolicy):
            args = StackValidationArgs([
                PolicyResource(r.type, unknown_checking_proxy(copy.deepcopy(dict(r.props))), r.urn, r.name,
                               options(r.protect, r.parent), None, None, [], {}) for r in resources])
            online += [(policy.name, m, urn) for m, urn in run(policy, args)]
        else:
            for r in resources:
                args = resource_args(r.type, dict(r.props), r.urn, r.name, protect=r.protect, parent=r.parent)
                online += [(policy.name, m, r.urn) for m, _ in run(policy, args)]
    assert sorted(online) == offline


def test_settings_convert_to_the_pack_config_each_policy_reads() -> None:
    settings = PolicySettings.model_validate({"maxGpuPoolNodes": 4, "allowedRegistries": ["nvcr.io"],
                                              "teamNamespacePrefix": "ml-", "rules": {RULES[0].name: "advisory"}})
    document = pack_config(settings, RULES)
    assert document[RULES[0].name]["enforcementLevel"] == "advisory"
    wanted = settings.policy_config().model_dump(by_alias=True)
    for policy, rule in zip(pack.policies(), RULES):
        keys = pack.config_fields(rule)
        read = pack.policy_config(document.get(rule.name, {})).model_dump(by_alias=True)
        assert {k: read[k] for k in keys} == {k: wanted[k] for k in keys}, rule.name
        if policy.config_schema:  # what the CLI validates the entry against
            assert set(document.get(rule.name, {})) - {"enforcementLevel"} <= set(policy.config_schema.properties)


# --- the pack's files ----------------------------------------------------------------------------


def test_pulumi_policy_yaml_is_a_python_pack_on_the_repository_venv() -> None:
    project = yaml.safe_load((REPO / "policies/PulumiPolicy.yaml").read_text(encoding="utf-8"))
    assert project["runtime"]["name"] == "python"
    venv = project["runtime"]["options"]["virtualenv"]
    assert (REPO / "policies" / venv).resolve() == (REPO / ".venv").resolve()
    assert project["description"] and project["version"]


def test_main_only_constructs_the_pack_from_the_built_policies() -> None:
    tree = ast.parse((REPO / "policies/__main__.py").read_text(encoding="utf-8"))
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "PolicyPack"]
    [call] = calls
    keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
    assert keywords == {"name": "'cloudml'", "enforcement_level": "EnforcementLevel.MANDATORY", "policies": "pack.policies()"}
    top_level_calls = [n for n in tree.body if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call)]
    assert [ast.unparse(n.value.func) for n in top_level_calls] == ["sys.path.insert", "PolicyPack"]


# --- the README's guardrails reference --------------------------------------------------------


def test_readme_embeds_the_generated_rules_table_exactly() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert readme.count(doc.START_MARKER) == 1 and readme.count(doc.END_MARKER) == 1
    between = readme.split(doc.START_MARKER, 1)[1].split(doc.END_MARKER, 1)[0]
    assert between == "\n" + doc.rules_markdown(), f"README's guardrails tables are stale; run {doc.REGENERATE_COMMAND}"
    guardrails = readme.split("\n## Guardrails\n", 1)[1].split("\n## ", 1)[0]
    assert doc.START_MARKER in guardrails and doc.REGENERATE_COMMAND in guardrails


def test_rules_table_has_a_row_per_rule_with_level_and_opt_out() -> None:
    table = doc.rules_markdown([SEEN, PRODUCTION])
    assert "| `seen` | mandatory | Reports what it saw. | none (pack config: `maxGpuPoolNodes`) |" in table
    assert "| `production-jobs` | mandatory | No Jobs in production. | disable it (pack config: `productionStacks`) |" in table
    assert "| `maxGpuPoolNodes` | `16` | The largest max size a GPU node group may have. | `seen` |" in table
    assert "| `devStacks` | `[\"*dev*\"]` | Stack name patterns of development stacks. | — |" in table


def test_write_readme_repairs_a_stale_copy(tmp_path, monkeypatch) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n\n{doc.START_MARKER}\nold\n{doc.END_MARKER}\nafter\n", encoding="utf-8")
    monkeypatch.setattr(doc, "README", stale)
    assert doc.main(["--check"]) == 1
    assert doc.main(["--write-readme"]) == 0
    assert stale.read_text(encoding="utf-8") == f"# x\n\n{doc.START_MARKER}\n{doc.rules_markdown()}{doc.END_MARKER}\nafter\n"
    assert doc.main(["--check"]) == 0


@pytest.mark.parametrize("argv", [["--nope"], ["a", "b"]])
def test_doc_usage_errors(argv) -> None:
    assert doc.main(argv) == 2
