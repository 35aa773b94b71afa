"""Layer 2: the Team component under Pulumi mocks — its children, its StackReference, and the
cross-stack checks on the path `pulumi up` takes (inside the apply on the platform's outputs)."""

from __future__ import annotations

import pytest
from conftest import STACKS, sample_config

from cloudml.engine import run_program
from cloudml.stackfile import load_stack_file
from components.errors import ConfigError
from components.render import RenderError
from components.team import only_jobset


def by_name(plan) -> dict[str, dict]:
    return {r["name"]: r for r in plan.resources}


def test_team_children_are_exactly_these(sample_plans):
    """A team stack makes its component, reads its platform, builds a provider, a generated token and its
    Secret per devEnvironment, a Secret per entry of `secrets`, and one ConfigGroup per workload."""
    got = sorted((r["type"], r["name"], r["read"]) for r in sample_plans["team-nlp"].resources)
    workloads = [w["name"] for w in sample_config("team-nlp")["cloudml:team"]["workloads"]]
    assert got == sorted([
        ("cloudml:team:Team", "nlp", False),
        ("pulumi:pulumi:StackReference", "nlp-platform", True),
        ("pulumi:providers:kubernetes", "nlp-k8s", False),
        ("kubernetes:core/v1:Secret", "nlp-secret-experiment-tracker", False),
        ("random:index/randomPassword:RandomPassword", "nlp-bob-token", False),
        ("kubernetes:core/v1:Secret", "nlp-bob-token-secret", False),
        ("kubernetes:core/v1:PersistentVolumeClaim", "nlp-bob-home", False),
        *[("kubernetes:yaml/v2:ConfigGroup", f"nlp-{w}", False) for w in workloads if w != "bert-ps"],
        # The distributedTraining workload's JobSet is its own resource (see the next test).
        ("kubernetes:jobset.x-k8s.io/v1alpha2:JobSet", "nlp-bert-ps", False),
    ])


def test_a_changed_jobset_is_replaced_not_patched(sample_plans):
    """JobSet's webhook refuses changes to spec.replicatedJobs, and pulumi-kubernetes does not know to
    replace a JobSet: the Team asks for it (delete first: the new one has the same name)."""
    jobset = by_name(sample_plans["team-nlp"])["nlp-bert-ps"]
    assert jobset["inputs"]["apiVersion"] == "jobset.x-k8s.io/v1alpha2" and jobset["inputs"]["kind"] == "JobSet"
    assert jobset["inputs"]["metadata"]["name"] == "bert-ps" and jobset["inputs"]["spec"]["replicatedJobs"]
    assert jobset["replaceOnChanges"] == ["spec"] and jobset["deleteBeforeReplace"] is True


def test_team_secrets_stay_secret_and_exist_before_the_pods_that_read_them(sample_plans):
    """`secrets` become Opaque Secrets whose values are Pulumi secrets (never in the plan); a workload that
    reads one through secretEnv is created after it; the generated devEnvironment token likewise."""
    resources = by_name(sample_plans["team-nlp"])
    secret = resources["nlp-secret-experiment-tracker"]
    assert secret["inputs"]["metadata"]["name"] == "experiment-tracker"
    assert secret["inputs"]["metadata"]["namespace"] == "team-nlp"
    assert secret["inputs"]["stringData"] == "[secret]"  # the whole map is a Pulumi secret
    manifest = next(o.object for o in sample_plans["team-nlp"].objects if o.object["kind"] == "Secret"
                    and o.object["metadata"]["name"] == "experiment-tracker")
    assert manifest["stringData"] == {"api-key": "[secret]"}  # the manifest names the keys, never the values
    platform = resources["nlp-platform"]["urn"]  # every workload waits for the platform's outputs
    assert sorted(resources["nlp-bert-finetune"]["dependsOn"]) == sorted([secret["urn"], platform])
    token = resources["nlp-bob-token"]["inputs"]
    assert (token["length"], token["special"]) == (48, False)
    token_secret = resources["nlp-bob-token-secret"]
    assert token_secret["inputs"]["metadata"]["name"] == "bob-token"
    assert token_secret["inputs"]["stringData"] == "[secret]"
    assert sorted(resources["nlp-bob"]["dependsOn"]) == sorted([token_secret["urn"], resources["nlp-bob-home"]["urn"], platform])
    # Workloads that read no secret do not wait for one.
    assert resources["nlp-tokenizer-refresh"]["dependsOn"] == [platform]


def test_a_dev_environments_home_claim_outlives_the_environment(sample_plans):
    """The home claim is its own resource, retained on delete (a ConfigGroup child would be deleted
    with the workload), created before the Job that mounts it; the ConfigGroup no longer holds it."""
    plan = sample_plans["team-nlp"]
    resources = by_name(plan)
    home = resources["nlp-bob-home"]
    assert (home["retainOnDelete"], home["protect"]) == (True, False)
    # It takes over the claim earlier versions kept in the ConfigGroup (named as yaml/v2 names it) rather
    # than deleting that one, and the person's files with it.
    # (The SDK computes the alias URN under the mocks with the root stack's type in the chain; the
    # engine resolves the alias from its name and parent URN.)
    [alias] = home["aliases"]
    assert alias.startswith("urn:pulumi:team-nlp::cloudml::")
    assert alias.endswith("cloudml:team:Team$kubernetes:yaml/v2:ConfigGroup$kubernetes:core/v1:PersistentVolumeClaim"
                          "::nlp-bob:team-nlp/bob-home")
    assert home["inputs"]["metadata"]["name"] == "bob-home"
    assert home["inputs"]["metadata"]["namespace"] == "team-nlp"
    assert home["inputs"]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert home["urn"] in resources["nlp-bob"]["dependsOn"]
    group_kinds = [o.object["kind"] for o in plan.objects if o.source == resources["nlp-bob"]["urn"]]
    assert sorted(group_kinds) == ["Job", "Service"]
    job = next(o.object for o in plan.objects if o.source == resources["nlp-bob"]["urn"] and o.object["kind"] == "Job")
    claims = [v["persistentVolumeClaim"]["claimName"] for v in job["spec"]["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v]
    assert "bob-home" in claims


def test_stack_reference_names_the_platform_stack(sample_plans):
    """The StackReference reads exactly the stack named in platformStack."""
    ref = by_name(sample_plans["team-vision"])["vision-platform"]
    assert ref["inputs"]["name"] == "organization/cloudml/platform-dev"


def test_workloads_go_through_the_platform_kubeconfig(sample_plans):
    """Every workload ConfigGroup uses the provider built from the platform's (secret) kubeconfig."""
    resources = by_name(sample_plans["team-vision"])
    provider = resources["vision-k8s"]
    assert provider["inputs"]["kubeconfig"] == "[secret]"
    workloads = [w["name"] for w in sample_config("team-vision")["cloudml:team"]["workloads"]]
    assert len(workloads) >= 9
    for name in (f"vision-{w}" for w in workloads):
        assert resources[name]["provider"].startswith(provider["urn"] + "::")
        assert resources[name]["parent"] == resources["vision"]["urn"]


def test_workload_objects_land_in_the_team_namespace(sample_plans):
    """Objects use the namespace and service account the platform exported for this team."""
    for item in sample_plans["team-vision"].objects:
        assert item.object["metadata"]["namespace"] == "team-vision"
    job = next(o.object for o in sample_plans["team-vision"].objects if o.object["metadata"]["name"] == "resnet-baseline")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "vision-workloads"


def test_team_outputs(sample_plans):
    """The team stack exports its namespace and workload names."""
    assert sample_plans["team-nlp"].outputs == {
        "namespace": "team-nlp",
        "workloads": ["bert", "bert-finetune", "bert-ps", "bert-search", "bob", "tokenizer-refresh"],
    }


def test_team_namespace_output_is_the_one_the_platform_exported():
    """Not the `team-<name>` convention: a platform that names the namespace otherwise is believed."""
    stack = load_stack_file(STACKS, "team-nlp")
    outputs = _platform_outputs(
        teams={"nlp": {"namespace": "ml-nlp-prod", "serviceAccount": "nlp-workloads", "gpuQuota": 8,
                       "volumes": {"shared": "shared", "datasets": "datasets", "models": "models", "logs": "logs"}}},
        pools={"l4": {"gpuType": "l4", "gpusPerNode": 1, "maxNodes": 8, "capacity": "spot"}},
    )
    run = run_program(stack, {"organization/cloudml/platform-dev": outputs})
    assert run.outputs["namespace"] == "ml-nlp-prod"


@pytest.mark.parametrize("objects, got", [
    ([], "nothing"),
    ([{"kind": "JobSet"}, {"kind": "ConfigMap"}], "['JobSet', 'ConfigMap']"),
    ([{"kind": "Job"}], "['Job']"),
])
def test_a_distributed_render_that_is_not_exactly_one_jobset_is_an_internal_error(objects, got):
    """`_jobset` deploys one object as the JobSet: a second object would be dropped silently, another kind
    deployed as a JobSet. Either is a template bug, reported as a RenderError naming what was rendered."""
    with pytest.raises(RenderError) as caught:
        only_jobset("nlp-bert-ps", objects)
    assert str(caught.value) == f"nlp-bert-ps: a distributedTraining workload must render exactly one JobSet, got {got}"
    assert only_jobset("x", [{"kind": "JobSet", "spec": {}}]) == {"kind": "JobSet", "spec": {}}


def _platform_outputs(teams: dict, pools: dict) -> tuple[dict, list[str]]:
    return ({"clusterName": "ml-dev", "kubeconfig": "{}", "teams": teams, "gpuPools": pools, "buckets": BUCKETS,
             "loadBalancing": {"allowInternetFacing": False}, "sharedStorageClass": "cloudml-shared",
             "prometheusUrl": "http://prometheus.monitoring.svc:9090"}, ["kubeconfig"])


BUCKETS = {"datasets": "d-1", "models": "m-1", "checkpoints": "c-1", "logs": "l-1"}


def test_cross_stack_check_runs_on_the_pulumi_up_path():
    """Under `pulumi up` the checks run when the platform's outputs arrive; a team the platform does not
    know, and a GPU type no pool offers, stop the run with a ConfigError naming both — nothing is deployed."""
    stack = load_stack_file(STACKS, "team-vision")
    outputs = _platform_outputs(
        teams={"nlp": {"namespace": "team-nlp", "serviceAccount": "nlp-workloads", "gpuQuota": 8}},
        pools={"l4": {"gpuType": "l4", "gpusPerNode": 1, "maxNodes": 2, "capacity": "spot"}},
    )
    with pytest.raises(ConfigError) as caught:
        run_program(stack, {"organization/cloudml/platform-dev": outputs})
    lines = [str(p) for p in caught.value.problems]
    assert lines[0] == (
        'cloudml:team.name: is not a team of platform stack organization/cloudml/platform-dev (got "vision"). '
        "Fix: add `vision` under cloudml:platform.teams in the platform stack, or fix the name (teams there: nlp)"
    )
    assert lines[1] == (
        'cloudml:team.workloads[0] (via defaults.gpuType): (workload resnet-baseline) GPU type a10g is offered by no '
        'GPU pool of organization/cloudml/platform-dev (got "a10g"). Fix: use one of: l4'
    )
    # Six workloads ask for a10g: resnet-baseline, resnet-nightly, resnet-dist, resnet, alice, resnet-lr.
    assert len(lines) == 7


def test_platform_without_teams_or_pools_is_a_clear_error():
    """A platform that declares no teams and no GPU pools: the team stack gets both problems with fixes, not a KeyError."""
    stack = load_stack_file(STACKS, "team-nlp")
    with pytest.raises(ConfigError) as caught:
        run_program(stack, {"organization/cloudml/platform-dev": _platform_outputs(teams={}, pools={})})
    assert [str(p) for p in caught.value.problems] == [
        'cloudml:team.name: is not a team of platform stack organization/cloudml/platform-dev (got "nlp"). '
        "Fix: add `nlp` under cloudml:platform.teams in the platform stack, or fix the name (teams there: none)",
        *[f'cloudml:team.workloads[{i}] (via defaults.gpuType): (workload {name}) GPU type l4 is offered by no GPU '
          'pool of organization/cloudml/platform-dev (got "l4"). Fix: use one of: none (the platform has no GPU pools)'
          for i, name in ((0, "bert-finetune"), (2, "bert-ps"), (3, "bert"))],
    ]


def test_team_workload_config_groups_do_not_await_jobs(sample_plans):
    """A training Job is started by `pulumi up`, not awaited (Pulumi would fail the update after 10 minutes)."""
    groups = [r for r in sample_plans["team-vision"].resources if r["type"] == "kubernetes:yaml/v2:ConfigGroup"]
    assert groups and all(g["inputs"]["skipAwait"] is True for g in groups)


def test_a_run_that_never_settles_is_made_again(monkeypatch):
    """A hung mock run (a future nothing completes) is abandoned after the timeout and made once more."""
    import asyncio

    from cloudml import engine

    monkeypatch.setenv("CLOUDML_PLAN_TIMEOUT", "1")
    attempts = []

    def program():
        attempts.append(1)
        if len(attempts) == 1:
            return asyncio.get_event_loop().create_future()  # awaited by run_in_stack, never completed
        return None

    run = engine.run_program(load_stack_file(STACKS, "team-nlp"), program=program)
    assert len(attempts) == 2 and run.registrations == []
