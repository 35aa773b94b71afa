"""The Pulumi program: read the stack's config, build a Platform or a Team, export outputs.

`__main__.py` calls `run()` under a real `pulumi up`; `cloudml plan` calls the same `run()` under
Pulumi's mocks. A stack sets exactly one of `cloudml:platform` and `cloudml:team`.
"""

from __future__ import annotations

import pulumi

from components import platform_view as pv
from components.errors import ConfigError, ConfigProblem
from components.platform import Platform
from components.spec import load_platform, load_team, platform_warnings
from components.team import Team


def read_stack_config() -> tuple[str, object]:
    """("platform" | "team", raw config) from the stack's Pulumi config."""
    config = pulumi.Config("cloudml")
    platform, team = config.get_object("platform"), config.get_object("team")
    if (platform is None) == (team is None):
        raise ConfigError([ConfigProblem(
            "cloudml",
            "a stack must set exactly one of cloudml:platform and cloudml:team"
            + (" (it sets both)" if platform is not None else " (it sets neither)"),
            "make platform stacks set cloudml:platform and team stacks set cloudml:team",
        )])
    return ("platform", platform) if platform is not None else ("team", team)


def run() -> None:
    """Build the stack's component and export what other stacks and people need."""
    kind, raw = read_stack_config()
    if kind == "platform":
        spec = load_platform(raw)
        for warning in platform_warnings(spec):
            pulumi.log.warn(warning)
        region = pulumi.Config("aws").require("region")
        platform = Platform(spec.name, spec, region)
        pulumi.export(pv.OUTPUT_CLUSTER_NAME, platform.cluster_name)
        pulumi.export(pv.OUTPUT_KUBECONFIG, platform.kubeconfig)
        pulumi.export(pv.OUTPUT_TEAMS, platform.teams)
        pulumi.export(pv.OUTPUT_GPU_POOLS, platform.gpu_pools)
        cluster = platform.cluster
        pulumi.export("clusterEndpoint", cluster.endpoint)
        pulumi.export("clusterCertificateAuthority", cluster.certificate_authority)
        pulumi.export("oidcProviderArn", cluster.oidc_provider_arn)
        pulumi.export("oidcIssuerUrl", cluster.oidc_issuer_url)
        pulumi.export("buckets", platform.buckets)
        pulumi.export("sharedStorageClass", platform.shared_storage_class)
        pulumi.export("loadBalancing", platform.load_balancing)
        # Team stacks' KEDA ScaledObjects query this Prometheus (platform_view.OUTPUT_PROMETHEUS_URL).
        pulumi.export(pv.OUTPUT_PROMETHEUS_URL, platform.prometheus_url)
    else:
        spec = load_team(raw)
        team = Team(spec.name, spec)
        pulumi.export("namespace", team.namespace)
        pulumi.export("workloads", sorted(team.workloads))

