"""The platform stack contract (`cloudml:platform`): exact problem text for every rule, all errors at
once, secrets never shown, the defaults a valid platform gets and the oversubscription warning.

Rows marked xfail(strict=True) pin the wording (or the check) we want where the source is wrong
today; they fail loudly (XPASS) once the source is fixed, so marker and text get updated together.
"""

from __future__ import annotations

import copy

import pytest

from components import gpu_catalog
from components.errors import ConfigError
from components.spec import PlatformSpec, load_platform, platform_warnings
from conftest import STACKS
from cloudml.stackfile import load_stack_file

NOT_RAISED = pytest.fail.Exception  # what pytest.raises raises when nothing was raised
POOL = {"name": "a10g", "instanceTypes": ["g5.12xlarge"], "max": 4}  # 4 nodes x 4 GPUs = 16
VPC = "vpc-0123456789abcdef0"
SUBNETS = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
CATALOG = ", ".join(sorted(gpu_catalog.GPU_INSTANCE_TYPES))
KEYS = ("admins, autoscaling, endpoint, gpuPools, kubernetesVersion, loadBalancing, monitoring, name, network, "
        "protectStatefulResources, storage, systemPool, teams")
WEBHOOK = "https://hooks.slack.com/services/T0000/B0000/XXXXSECRETXXXX"
ADMINS = ["arn:aws:iam::111122223333:role/platform-admins"]
REACHABLE = {"privateAccessCidrs": ["10.0.0.0/8"]}  # a VPN network: no reachability warning


def platform(**changes) -> dict:
    """A small valid `cloudml:platform` mapping with these top-level keys replaced."""
    raw = {"name": "ml-dev", "admins": ADMINS, "gpuPools": [copy.deepcopy(POOL)], "teams": {"vision": {"gpuQuota": 4}}}
    raw.update(copy.deepcopy(changes))
    return raw


def pool(**changes) -> dict:
    return {**POOL, **changes}


def problem_lines(raw) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_platform(raw)
    return [str(p) for p in caught.value.problems]


def test_catalog_list_in_messages_is_the_sorted_catalog():
    """The unknown-instance-type fix below lists the catalog; pin its start so a catalog edit is noticed."""
    assert CATALOG.startswith("g4dn.12xlarge, g4dn.16xlarge, g4dn.2xlarge,") and CATALOG.endswith("p5.4xlarge")


ROWS = [
    pytest.param(
        platform(gpuPool=[]),
        [f"cloudml:platform.gpuPool: unknown key (got []). Fix: did you mean `gpuPools`? remove it or use one of: {KEYS}"],
        id="unknown-key-did-you-mean",
    ),
    pytest.param(
        platform(gpuPools=[{"name": "a10g", "instanceTypes": ["g5.12xlarge"], "max": 4, "maxSize": 4}]),
        ["cloudml:platform.gpuPools[0].maxSize: unknown key (got 4). Fix: did you mean `max`? remove it or use one of: "
         "capacity, diskSizeGib, instanceTypes, max, min, name, timeSlicingReplicas"],
        id="unknown-pool-key-did-you-mean",
    ),
    pytest.param(
        {"admins": ADMINS},
        ["cloudml:platform.name: is required. Fix: add it: platform name; the EKS cluster name and the prefix of "
         "every resource."],
        id="missing-name",
    ),
    pytest.param(
        platform(gpuPools=[{"name": "a10g", "instanceTypes": ["g5.12xlarge"]}]),
        ["cloudml:platform.gpuPools[0].max: is required. Fix: add it: maximum nodes; caps the pool's cost."],
        id="missing-pool-max",
    ),
    pytest.param(
        platform(name="ML-Dev"),
        ['cloudml:platform.name: is not a valid platform name (got "ML-Dev"). Fix: use lower-case letters, digits and '
         "'-', starting and ending with a letter or digit (Kubernetes DNS-1123 label)"],
        id="name-upper-case",
    ),
    pytest.param(
        platform(name="m" * 33),
        [f'cloudml:platform.name: is 33 characters long; a platform name may have at most 32 (got "{"m" * 33}"). '
         "Fix: shorten it to 32 characters or fewer"],
        id="name-too-long",
    ),
    pytest.param(
        platform(gpuPools=[pool(name="a10g-pool-for-the-team")]),
        ['cloudml:platform.gpuPools[0].name: is 22 characters long; a pool name may have at most 20 '
         '(got "a10g-pool-for-the-team"). Fix: shorten it to 20 characters or fewer'],
        id="pool-name-too-long",
    ),
    pytest.param(
        platform(kubernetesVersion="1.20"),
        ["cloudml:platform.kubernetesVersion: input should be '1.30', '1.31', '1.32' or '1.33' (got \"1.20\"). "
         "Fix: use one of '1.30', '1.31', '1.32' or '1.33'"],
        id="unsupported-kubernetes-version",
    ),
    pytest.param(
        platform(gpuPools=[pool(instanceTypes=["g5.xlarge", "g5.12xlarge"])]),
        ['cloudml:platform.gpuPools[0].instanceTypes: mixes GPU models or counts (g5.xlarge=1xa10g, '
         'g5.12xlarge=4xa10g) (got ["g5.xlarge", "g5.12xlarge"]). Fix: put only instance types with the same GPU '
         "model and GPU count in one pool; make another pool for the rest"],
        id="pool-mixes-gpu-counts",
    ),
    pytest.param(
        platform(gpuPools=[pool(instanceTypes=["g5.xlarge", "g6.xlarge"])]),
        ['cloudml:platform.gpuPools[0].instanceTypes: mixes GPU models or counts (g5.xlarge=1xa10g, g6.xlarge=1xl4) '
         '(got ["g5.xlarge", "g6.xlarge"]). Fix: put only instance types with the same GPU model and GPU count in '
         "one pool; make another pool for the rest"],
        id="pool-mixes-gpu-models",
    ),
    pytest.param(
        platform(gpuPools=[pool(instanceTypes=["g5.12xlarge", "g5.12xlarge"])]),
        ['cloudml:platform.gpuPools[0].instanceTypes: lists an instance type twice (got ["g5.12xlarge", '
         '"g5.12xlarge"]). Fix: list each instance type once'],
        id="pool-lists-type-twice",
    ),
    pytest.param(
        platform(gpuPools=[pool(instanceTypes=["p3.2xlarge"])]),
        ['cloudml:platform.gpuPools[0].instanceTypes: p3.2xlarge is not a GPU instance type cloudml knows '
         f'(got ["p3.2xlarge"]). Fix: use types from the GPU catalog: {CATALOG}'],
        id="unknown-gpu-instance-type",
    ),
    pytest.param(
        platform(gpuPools=[pool(instanceTypes=["p3.2xlarge", "m5.large"])]),
        ['cloudml:platform.gpuPools[0].instanceTypes: p3.2xlarge, m5.large are not GPU instance types cloudml knows '
         f'(got ["p3.2xlarge", "m5.large"]). Fix: use types from the GPU catalog: {CATALOG}'],
        id="unknown-gpu-instance-types",
    ),
    pytest.param(
        platform(gpuPools=[pool(min=3, max=2)]),
        ["cloudml:platform.gpuPools[0].max: is below min (3) (got 2). Fix: set max to 3 or more, or lower min"],
        id="pool-max-below-min",
    ),
    pytest.param(
        platform(systemPool={"min": 3, "max": 2}),
        ["cloudml:platform.systemPool.max: is below min (3) (got 2). Fix: set max to 3 or more, or lower min"],
        id="system-pool-max-below-min",
    ),
    pytest.param(
        platform(gpuPools=[pool(), pool(instanceTypes=["g5.xlarge"])]),
        ['cloudml:platform.gpuPools[1].name: is already the name of gpuPools[0] (got "a10g"). '
         "Fix: give every GPU pool its own name"],
        id="duplicate-pool-names",
    ),
    pytest.param(
        platform(teams={"vision": {"gpuQuota": 17}}),
        ["cloudml:platform.teams.vision.gpuQuota: is more than the 16 GPU(s) all GPU pools can supply at their max "
         "size (got 17). Fix: lower the quota to 16 or less, or raise gpuPools[].max"],
        id="team-quota-over-capacity",
    ),
    pytest.param(
        platform(gpuPools=[], teams={"vision": {"gpuQuota": 1}}),
        ["cloudml:platform.teams.vision.gpuQuota: is more than the 0 GPU(s) all GPU pools can supply at their max "
         "size (got 1). Fix: lower the quota to 0 or less, or raise gpuPools[].max"],
        id="team-quota-without-pools",
    ),
    pytest.param(
        platform(endpoint={"publicAccessCidrs": ["203.0.113.0/24", "0.0.0.0/0"]}),
        ['cloudml:platform.endpoint.publicAccessCidrs: 0.0.0.0/0 opens the Kubernetes API to the whole internet '
         '(got ["203.0.113.0/24", "0.0.0.0/0"]). Fix: list your office/VPN CIDRs instead, or set '
         "endpoint.allowPublicInternet: true to accept the risk"],
        id="world-open-endpoint-without-opt-in",
    ),
    pytest.param(
        platform(endpoint={"publicAccessCidrs": ["0.0.0.0/0"], "allowPublicInternet": False}),
        ['cloudml:platform.endpoint.publicAccessCidrs: 0.0.0.0/0 opens the Kubernetes API to the whole internet '
         '(got ["0.0.0.0/0"]). Fix: list your office/VPN CIDRs instead, or set '
         "endpoint.allowPublicInternet: true to accept the risk"],
        id="world-open-endpoint-opt-in-false",
    ),
    pytest.param(
        platform(network={"vpcId": VPC, "privateSubnetIds": SUBNETS[:1]}),
        ['cloudml:platform.network.privateSubnetIds: an existing VPC needs at least 2 private subnets '
         '(got ["subnet-0123456789abcdef0"]). Fix: list the private subnet ids of 2 or more AZs'],
        id="existing-vpc-one-subnet",
    ),
    pytest.param(
        platform(network={"privateSubnetIds": SUBNETS}),
        ['cloudml:platform.network.privateSubnetIds: subnets were given without vpcId '
         '(got ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]). '
         "Fix: set network.vpcId to the VPC that holds these subnets"],
        id="subnets-without-vpc",
    ),
    pytest.param(
        platform(network={"vpcId": VPC}),
        ["cloudml:platform.network.privateSubnetIds: an existing VPC needs at least 2 private subnets (got []). "
         "Fix: list the private subnet ids of 2 or more AZs"],
        id="existing-vpc-no-subnets",
    ),
    pytest.param(
        platform(admins=[]),
        ["cloudml:platform.admins: is empty, so no one could reach the cluster (cloudml grants no implicit "
         "creator-admin). Fix: list the IAM role you run `pulumi up` with, e.g. "
         "arn:aws:iam::111122223333:role/platform-admins"],
        id="no-admins",
    ),
    pytest.param(
        platform(admins=["root"]),
        ['cloudml:platform.admins[0]: is not an IAM role or user ARN (got "root"). '
         "Fix: write arn:aws:iam::<12-digit account>:role/<name>"],
        id="bad-admin-arn",
    ),
    pytest.param(
        platform(monitoring={"alertEmails": ["oncall"]}),
        ['cloudml:platform.monitoring.alertEmails[0]: is not an email address (got "oncall"). Fix: write name@example.com'],
        id="bad-alert-email",
    ),
    pytest.param(
        platform(teams={"vision": {"gpuQuota": 4, "memoryQuota": "512GB"}}),
        ['cloudml:platform.teams.vision.memoryQuota: is not a memory quantity (got "512GB"). '
         'Fix: write a number with a binary unit, such as "512Mi" or "16Gi"'],
        id="bad-team-memory-quota",
    ),
    pytest.param(
        platform(monitoring={"slackWebhookUrl": {"url": WEBHOOK}}),
        ["cloudml:platform.monitoring.slackWebhookUrl: input should be a valid string (got [secret]). Fix: use a "
         "string (quote it in YAML if it looks like a number or a boolean): slack incoming webhook (store with "
         "`pulumi config set --secret`)."],
        id="secret-field-bad-value-is-hidden",
    ),
    # --- current text is wrong: the wording we want ---
    pytest.param(
        platform(gpuPools=[pool(instanceTypes=[])]),
        ["cloudml:platform.gpuPools[0].instanceTypes: list should have at least 1 item after validation, not 0 "
         "(got []). Fix: give at least 1 item(s): GPU instance types (several for spot diversity); all must have the "
         "same GPU model and count."],
        id="pool-without-instance-types",
    ),
    pytest.param(
        platform(teams={"vision": {"gpuQuota": -1}}),
        ["cloudml:platform.teams.vision.gpuQuota: input should be greater than or equal to 0 (got -1). Fix: use 0 or "
         "more: GPUs the team may request at once (ResourceQuota requests.nvidia.com/gpu)."],
        id="negative-gpu-quota",
    ),
    pytest.param(
        platform(teams={"Vision": {"gpuQuota": 1}}),
        ['cloudml:platform.teams.Vision: is not a valid team name (got "Vision"). Fix: use lower-case letters, digits '
         "and '-', starting and ending with a letter or digit (Kubernetes DNS-1123 label)"],
        id="bad-team-name-key",
    ),
]


@pytest.mark.parametrize(("raw", "expected"), ROWS)
def test_platform_rule_reports_exact_problem(raw, expected):
    """Each platform-stack rule yields exactly the pinned problem text (and nothing else)."""
    assert problem_lines(raw) == expected


def test_missing_platform_section_is_one_problem():
    """A platform stack without `cloudml:platform` says so."""
    assert problem_lines(None) == ["cloudml:platform: is not set. Fix: add `cloudml:platform:` to the stack's config"]


def test_bad_team_name_key_is_rejected_at_the_team():
    """A team name that is not a DNS label is refused (path starts at the team key; see the xfail row)."""
    with pytest.raises(ConfigError) as caught:
        load_platform(platform(teams={"Vision": {"gpuQuota": 1}}))
    [problem] = caught.value.problems
    assert problem.path.startswith("cloudml:platform.teams.Vision")
    assert (problem.message, problem.value) == ("is not a valid team name", '"Vision"')


def test_world_open_endpoint_is_accepted_with_explicit_opt_in():
    """0.0.0.0/0 is allowed only when allowPublicInternet: true says so."""
    spec = load_platform(platform(endpoint={"publicAccessCidrs": ["0.0.0.0/0"], "allowPublicInternet": True}))
    assert spec.endpoint.allow_public_internet is True
    assert [str(c) for c in spec.endpoint.public_access_cidrs] == ["0.0.0.0/0"]


def test_existing_vpc_with_two_subnets_is_accepted():
    """vpcId with 2 private subnets is a valid existing-VPC network."""
    spec = load_platform(platform(network={"vpcId": VPC, "privateSubnetIds": SUBNETS}))
    assert (spec.network.vpc_id, spec.network.private_subnet_ids) == (VPC, SUBNETS)


def test_secret_value_never_appears_in_the_error():
    """A bad value in a secret field is shown as [secret], never as itself (not even in part)."""
    with pytest.raises(ConfigError) as caught:
        load_platform(platform(monitoring={"slackWebhookUrl": ["also", WEBHOOK]}))
    [problem] = caught.value.problems
    assert problem.value == "[secret]"
    assert "SECRET" not in str(caught.value) and "hooks.slack.com" not in str(caught.value)


def test_secret_field_value_is_kept_secret_when_valid():
    """A valid webhook is held as a SecretStr: repr and str do not show it."""
    spec = load_platform(platform(monitoring={"slackWebhookUrl": WEBHOOK}))
    assert spec.monitoring.slack_webhook_url.get_secret_value() == WEBHOOK
    assert WEBHOOK not in repr(spec) and WEBHOOK not in str(spec.monitoring)


# --- every error at once ------------------------------------------------------------------------


def test_all_errors_are_reported_at_once_in_natural_path_order():
    """Independent mistakes come back in one ConfigError, gpuPools[2] before gpuPools[10]."""
    pools = [pool(name=f"p{i}", instanceTypes=["g5.xlarge"], max=1) for i in range(12)]
    pools[10]["min"] = -1
    pools[2]["capacity"] = "reserved"
    raw = platform(name="ML", kubernetesVersion="1.20", gpuPools=pools,
                   endpoint={"publicAccessCidrs": ["0.0.0.0/0"]}, systemPool={"min": 3, "max": 2})
    with pytest.raises(ConfigError) as caught:
        load_platform(raw)
    assert [p.path for p in caught.value.problems] == [
        "cloudml:platform.endpoint.publicAccessCidrs",
        "cloudml:platform.gpuPools[2].capacity",
        "cloudml:platform.gpuPools[10].min",
        "cloudml:platform.kubernetesVersion",
        "cloudml:platform.name",
        "cloudml:platform.systemPool.max",
    ]
    lines = str(caught.value).splitlines()
    assert lines[0] == "6 problems in the stack config:"
    assert lines[2] == ("  - cloudml:platform.gpuPools[2].capacity: input should be 'on-demand' or 'spot' "
                        "(got \"reserved\"). Fix: use one of 'on-demand' or 'spot'")


def test_stack_wide_errors_are_reported_together():
    """Duplicate pool names, missing admins and every over-capacity quota are reported in one pass."""
    raw = platform(admins=[], gpuPools=[pool(), pool()], teams={"vision": {"gpuQuota": 40}, "nlp": {"gpuQuota": 33}})
    with pytest.raises(ConfigError) as caught:
        load_platform(raw)
    assert [p.path for p in caught.value.problems] == [
        "cloudml:platform.admins",
        "cloudml:platform.gpuPools[1].name",
        "cloudml:platform.teams.nlp.gpuQuota",
        "cloudml:platform.teams.vision.gpuQuota",
    ]
    assert [p.value for p in caught.value.problems] == [None, '"a10g"', "33", "40"]


# --- valid configs, defaults, warnings ----------------------------------------------------------


def test_sample_platform_stack_loads():
    """stacks/Pulumi.platform-dev.yaml (as the stack file reader hands it over) satisfies the contract."""
    raw = load_stack_file(STACKS, "platform-dev").config["cloudml:platform"]
    spec = load_platform(raw)
    assert spec.name == "ml-dev"
    assert [(p.name, p.gpu_type, p.gpus_per_node, p.capacity) for p in spec.gpu_pools] == [
        ("a10g", "a10g", 4, "on-demand"), ("l4-spot", "l4", 1, "spot"),
    ]
    assert {t: q.gpu_quota for t, q in spec.teams.items()} == {"vision": 16, "nlp": 8}
    assert spec.pool_capacity_gpus() == 24
    assert platform_warnings(spec) == []


def test_platform_defaults_are_applied():
    """A minimal platform gets the documented secure defaults."""
    spec = load_platform({"name": "ml-dev", "admins": ADMINS,
                          "gpuPools": [{"name": "l4", "instanceTypes": ["g6.xlarge"], "max": 2}]})
    assert isinstance(spec, PlatformSpec)
    assert spec.kubernetes_version == "1.31"
    [gpu_pool] = spec.gpu_pools
    assert (gpu_pool.min, gpu_pool.capacity, gpu_pool.disk_size_gib, gpu_pool.time_slicing_replicas) == (
        0, "on-demand", 200, 1)
    assert (spec.system_pool.instance_type, spec.system_pool.min, spec.system_pool.max) == ("m6i.xlarge", 2, 4)
    assert (spec.endpoint.allow_public_internet, spec.endpoint.public_access_cidrs) == (False, [])
    assert (str(spec.network.vpc_cidr), spec.network.availability_zones, spec.network.vpc_id) == ("10.40.0.0/16", 3, None)
    assert spec.load_balancing.allow_internet_facing is False
    assert spec.protect_stateful_resources is True
    assert (spec.storage.shared_filesystem, spec.storage.lustre.enabled) == ("efs", False)
    assert spec.monitoring.slack_webhook_url is None
    assert spec.teams == {}


def test_tenant_defaults_are_applied():
    """A team with only a GPU quota gets the default CPU, memory, storage and load balancer quotas."""
    spec = load_platform(platform())
    tenant = spec.teams["vision"]
    assert (tenant.cpu_quota, tenant.memory_quota, tenant.storage_quota, tenant.load_balancers, tenant.admins) == (
        "64", "512Gi", "2Ti", 2, [])


def test_time_slicing_multiplies_schedulable_gpus():
    """Capacity counts time-sliced GPUs: 4 nodes x 1 GPU x 4 replicas = 16."""
    spec = load_platform(platform(gpuPools=[pool(instanceTypes=["g5.xlarge"], timeSlicingReplicas=4)],
                                  teams={"vision": {"gpuQuota": 16}}))
    assert spec.gpu_pools[0].schedulable_gpus_per_node == 4
    assert spec.pool_capacity_gpus() == 16


def test_oversubscription_is_a_warning_with_exact_text():
    """Quotas that each fit but together exceed capacity load fine and produce one pinned warning."""
    spec = load_platform(platform(teams={"vision": {"gpuQuota": 16}, "nlp": {"gpuQuota": 12}}, endpoint=REACHABLE))
    assert platform_warnings(spec) == [
        "cloudml:platform.teams: the GPU quotas add up to 28, 12 more than the 16 GPU(s) the pools reach at max size; "
        "teams may wait for GPUs when all use their quota at once"
    ]


def test_quotas_equal_to_capacity_do_not_warn():
    """Exactly full capacity is not oversubscribed."""
    spec = load_platform(platform(teams={"vision": {"gpuQuota": 10}, "nlp": {"gpuQuota": 6}}, endpoint=REACHABLE))
    assert platform_warnings(spec) == []


def test_unreachable_private_endpoint_warns():
    """A private endpoint with no privateAccessCidrs is allowed (run from inside the VPC) but warned about."""
    spec = load_platform(platform())
    assert platform_warnings(spec) == [
        "cloudml:platform.endpoint: nothing outside the cluster can reach the Kubernetes API (private endpoint, no "
        "privateAccessCidrs); run `pulumi up` from inside the VPC, or list your VPN/CI networks in privateAccessCidrs"
    ]


def test_component_rules_are_reported_with_the_contracts_own_rules():
    """Rules the platform's components own (a bucket prefix S3 reserves, a storage quota too small for
    the team claims) come in the same round as the contract's stack-wide rules, not one by one."""
    raw = platform(name="xn--ml", admins=[], teams={"vision": {"gpuQuota": 4, "storageQuota": "50Gi"}})
    assert problem_lines(raw) == [
        "cloudml:platform.admins: is empty, so no one could reach the cluster (cloudml grants no implicit "
        "creator-admin). Fix: list the IAM role you run `pulumi up` with, e.g. arn:aws:iam::111122223333:role/platform-admins",
        "cloudml:platform.name: starts with 'xn--', which S3 reserves, and bucket names start with the platform name "
        "(got \"xn--ml\"). Fix: choose a name that does not start with 'xn--' or 'sthree-' or 'amzn-s3-demo-'",
        "cloudml:platform.teams.vision.storageQuota: is less than the 103Gi requested by the claims the platform makes "
        "for the team (shared, datasets, models, logs) (got \"50Gi\"). Fix: raise it well above 103Gi: "
        "dev-environment homes and other claims count against it too",
    ]
