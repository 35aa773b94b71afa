"""The team stack's component: `Team` deploys one team's workloads into its namespace."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components import platform_view as pv
from components.errors import ConfigError, ConfigProblem, display_value, format_path
from components.render import RENDERED_KINDS, WorkloadContext, render
from components.spec import TEAM_KEY, TeamSpec


def unrendered_kind_problems(spec: TeamSpec) -> list[ConfigProblem]:
    """Workload kinds the contract knows but cloudml cannot render yet are refused, never skipped."""
    return [
        ConfigProblem(
            format_path(TEAM_KEY, ["workloads", i, "kind"]),
            "cannot be deployed by this version of cloudml (no template for it yet)",
            f"use one of: {', '.join(RENDERED_KINDS)}",
            display_value(w.kind),
        )
        for i, w in enumerate(spec.workloads)
        if w.kind not in RENDERED_KINDS
    ]


def render_team(spec: TeamSpec, platform: pv.PlatformView) -> dict[str, list[dict]]:
    """workload name -> its Kubernetes objects, after the cross-stack checks pass."""
    problems = pv.team_platform_problems(spec, platform) + unrendered_kind_problems(spec)
    if problems:
        raise ConfigError(problems)
    return {w.name: render(w.kind, WorkloadContext(spec, w, platform)) for w in spec.workloads}


class Team(pulumi.ComponentResource):
    """Creates `<name>-platform` (StackReference to the platform stack), `<name>-k8s` (a Kubernetes
    provider from the platform's kubeconfig) and `<name>-<workload>` (a ConfigGroup of each
    workload's rendered objects).

    Outputs: `namespace`, `workloads` (names).
    """

    def __init__(self, name: str, spec: TeamSpec, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:team:Team", name, None, opts)
        problems = unrendered_kind_problems(spec)
        if problems:
            raise ConfigError(problems)
        child = pulumi.ResourceOptions(parent=self)
        self.platform_ref = pulumi.StackReference(f"{name}-platform", stack_name=spec.platform_stack, opts=child)
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.platform_ref.require_output(pv.OUTPUT_KUBECONFIG), opts=child
        )
        view = pulumi.Output.all(
            **{key: self.platform_ref.require_output(key) for key in (pv.OUTPUT_CLUSTER_NAME, pv.OUTPUT_TEAMS, pv.OUTPUT_GPU_POOLS)}
        ).apply(lambda outputs: pv.PlatformView.from_outputs(outputs, spec.platform_stack))
        # Cross-stack checks run when the platform's outputs arrive; a failure stops the update
        # before any workload object is sent to the cluster.
        rendered = view.apply(lambda platform: render_team(spec, platform))
        self.workloads = {
            w.name: k8s.yaml.v2.ConfigGroup(
                f"{name}-{w.name}",
                objs=rendered.apply(lambda by_name, n=w.name: by_name[n]),
                # Pulumi would otherwise wait for a Job to complete (and fail the update after 10
                # minutes): a training run is started by `pulumi up`, not awaited by it.
                skip_await=True,
                opts=pulumi.ResourceOptions(parent=self, provider=self.provider),
            )
            for w in spec.workloads
        }
        self.namespace = spec.namespace
        self.register_outputs({"namespace": self.namespace, "workloads": sorted(self.workloads)})
