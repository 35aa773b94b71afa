"""Team tenancy: for each team, its namespace (Pod Security `restricted`), service account and
ResourceQuota (GPUs via `requests.nvidia.com/gpu`), rendered from `templates/tenancy/`.

Foundation scope: LimitRange, RBAC, NetworkPolicy and the team's IRSA role are the platform issue's.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.render import render_template
from components.spec import PlatformSpec, TenantSpec, team_namespace


def team_service_account(team: str) -> str:
    return f"{team}-workloads"


def tenancy_objects(platform: PlatformSpec, team: str, tenant: TenantSpec) -> list[dict]:
    """The Kubernetes objects that make `team` a tenant of the cluster."""
    return render_template(
        "tenancy/team.yaml.j2",
        team=team,
        namespace=team_namespace(team),
        service_account=team_service_account(team),
        tenant=tenant,
        platform=platform.name,
    )


class Tenancy(pulumi.ComponentResource):
    """Creates `<name>-<team>` (a ConfigGroup of the team's tenancy objects) for every team.

    Outputs: `teams` (team -> namespace, serviceAccount, gpuQuota), the platform's `teams` output.
    """

    def __init__(self, name: str, spec: PlatformSpec, provider: k8s.Provider, cluster_access: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:Tenancy", name, None, opts)
        self.groups = {
            team: k8s.yaml.v2.ConfigGroup(
                f"{name}-{team}",
                objs=tenancy_objects(spec, team, tenant),
                # The provider can only act once the admins' access to the cluster exists.
                opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=cluster_access),
            )
            for team, tenant in spec.teams.items()
        }
        self.teams = {
            team: {"namespace": team_namespace(team), "serviceAccount": team_service_account(team), "gpuQuota": tenant.gpu_quota}
            for team, tenant in spec.teams.items()
        }
        self.register_outputs({"teams": self.teams})
