"""Every rule reads exactly the pack config keys it declares (`config_keys`).

Why it matters: under `pulumi preview --policy-pack`, a policy receives only the keys of its config
schema, which is built from `config_keys` (policies/pack.py). A rule that read an undeclared key
would silently see that key's default online, whatever `--policy-pack-config` says, while
`cloudml plan --policy-config` (one PolicyConfig for all rules) honours it: the two paths would
disagree without a word.

How it is checked: each rule runs over a corpus with a PolicyConfig whose field reads are watched
(`watched_config`): reading an undeclared field raises `UndeclaredConfigRead` at once, wherever the
read happens (in the check, a helper, or a PolicyConfig method such as `is_production`), and every
declared key must be read at least once. The second half keeps the first honest: it proves the
corpus reaches the code that reads configuration, so a clean run is not a run that never got there.
A read on a path the corpus never takes would go unseen; the corpus is the three sample stacks as
`cloudml plan` records them plus a violating fixture per rule family, and `test_the_watch_catches`
shows the watch itself fails a rule that reads an undeclared key.
"""

from __future__ import annotations

import pytest

from cloudml.plan import planned_resources
from policies.core import MANDATORY, Finding, PlannedResource, PolicyConfig, ResourceRule, StackRule, evaluate
from policies.pack import config_fields
from policies.rules import RULES
from test_policy_cloud import bucket_set
from test_policy_cloud_eks import cluster, launch_template, node_group
from test_policy_cloud_iam import role_policy
from test_policy_workloads import PDB, deployment, gpu_job, lb_service, namespace, planned, quota, without_gpus

# PolicyConfig attribute name -> its pack config key (camelCase): what config_keys lists.
FIELD_KEYS = {name: field.alias or name for name, field in PolicyConfig.model_fields.items()}


class UndeclaredConfigRead(AssertionError):
    """A rule read a PolicyConfig key it does not declare (an AssertionError: no rule catches it)."""


def watched_config(declared: set[str], reads: set[str]) -> PolicyConfig:
    """A default PolicyConfig that records each field read into `reads` and raises
    UndeclaredConfigRead on a field whose key is not in `declared`."""

    class Watched(PolicyConfig):
        def __getattribute__(self, name: str):
            key = FIELD_KEYS.get(name)
            if key is not None:
                if key not in declared:
                    raise UndeclaredConfigRead(f"reads {key}, which it does not declare in config_keys")
                reads.add(key)
            return super().__getattribute__(name)

    return Watched()


def reads_of(rule, resources: list[PlannedResource]) -> set[str]:
    """The config keys `rule` reads over `resources` (raising UndeclaredConfigRead on an undeclared one)."""
    reads: set[str] = set()
    evaluate([rule], resources, watched_config(set(config_fields(rule)), reads))
    return reads


def fixtures() -> list[PlannedResource]:
    """Violating and compliant fixtures of every rule family, beyond what the samples hold."""
    sneaky = without_gpus(gpu_job())
    kubernetes = [planned(gpu_job()), planned(sneaky), planned(lb_service({})), planned(namespace("team-x")),
                  planned(namespace("research", **{"cloudml.io/team": "r"})), planned(quota("team-x", **{"nvidia.com/gpu": "4"})),
                  planned(deployment(replicas=1), stack="team-vision-prod"), planned(PDB, stack="team-vision-prod")]
    aws = [*bucket_set().values(), *cluster(vpcConfig={"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/1", "128.0.0.0/1"]}),
           *launch_template(metadataOptions=None), node_group(scalingConfig={"minSize": 1, "maxSize": 40}, capacityType="ON_DEMAND"),
           *role_policy({"Effect": "Allow", "Action": "*", "Resource": "*"})]
    return kubernetes + aws


@pytest.fixture(scope="module")
def corpus(sample_plans) -> list[PlannedResource]:
    resources = [r for name in ("platform-dev", "team-vision", "team-nlp") for r in planned_resources(sample_plans[name])]
    return resources + fixtures()


@pytest.mark.parametrize("rule", RULES, ids=[r.name for r in RULES])
def test_every_rule_reads_exactly_the_config_keys_it_declares(corpus, rule):
    assert reads_of(rule, corpus) == set(config_fields(rule))


def test_the_watch_catches_an_undeclared_read_also_through_a_policy_config_method():
    """The check above can fail: a rule reading a key it does not declare, directly or through
    PolicyConfig.is_production, raises; declared, the same rule passes and its reads are listed."""
    def production_jobs(resources, config):
        for r in resources:
            if config.is_production(r.stack):
                yield r, Finding("runs in production", "Move it.")

    def capped(resource, config):
        if resource.props.get("replicas", 0) > config.max_gpu_pool_nodes:
            yield Finding("too many", "Lower it.")

    job = [PlannedResource("kubernetes:batch/v1:Job", "j", "urn:pulumi:team-prod::cloudml::kubernetes:batch/v1:Job::j", {"replicas": 40})]
    undeclared = [StackRule("production-jobs", "No Jobs in production.", MANDATORY, production_jobs, "none"),
                  ResourceRule("capped", "Capped.", MANDATORY, ("kubernetes:*",), capped, "none")]
    with pytest.raises(UndeclaredConfigRead, match="^reads productionStacks, which it does not declare in config_keys$"):
        reads_of(undeclared[0], job)
    with pytest.raises(UndeclaredConfigRead, match="^reads maxGpuPoolNodes, which it does not declare in config_keys$"):
        reads_of(undeclared[1], job)
    assert reads_of(StackRule("production-jobs", "No Jobs in production.", MANDATORY, production_jobs, "none",
                              config_keys=("productionStacks",)), job) == {"productionStacks"}
