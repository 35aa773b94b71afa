"""The team stack's component: `Team` deploys one team's workloads into its namespace."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from components import platform_view as pv
from components.errors import ConfigError
from components.labels import MANAGED_BY, PART_OF, TEAM_LABEL, WORKLOAD_LABEL
from components.render import RenderError, WorkloadContext, render
from components.spec import DevEnvironmentWorkload, DistributedTrainingWorkload, TeamSpec
from components.workloads.distributed import JOBSET_API_VERSION
from components.spec import home_claim_name
from components.workloads.dev_environment import TOKEN_SECRET_KEY, token_secret_name

# Jupyter's access token: 48 letters and digits (~285 bits), safe in a URL and a header.
TOKEN_LENGTH = 48


def render_team(spec: TeamSpec, platform: pv.PlatformView) -> dict[str, list[dict]]:
    """workload name -> its Kubernetes objects, after every stack-wide and cross-stack check passes."""
    problems = pv.team_platform_problems(spec, platform)
    if problems:
        raise ConfigError(problems)
    for warning in pv.team_platform_warnings(spec, platform):
        pulumi.log.warn(warning)
    return {w.name: render(w.kind, WorkloadContext(spec, w, platform)) for w in spec.workloads}


def _labels(spec: TeamSpec, component: str, workload: str | None = None) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        TEAM_LABEL: spec.name,
    }
    if workload is not None:
        labels[WORKLOAD_LABEL] = workload
    return labels


def only_jobset(name: str, objects: list[dict]) -> dict:
    """The one object a distributedTraining template renders, which must be a JobSet: anything else
    (a second object, another kind) would be dropped or misdeployed by `_jobset`, so it is a bug."""
    kinds = [o.get("kind") for o in objects]
    if kinds != ["JobSet"]:
        raise RenderError(f"{name}: a distributedTraining workload must render exactly one JobSet, got {kinds or 'nothing'}")
    return objects[0]


def _jobset(name: str, objects: pulumi.Output, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
    """A distributedTraining workload's JobSet, as its own resource: JobSet's webhook makes
    `spec.replicatedJobs` immutable, and pulumi-kubernetes only knows to replace the kinds it ships
    (a Job, not a JobSet), so a changed JobSet must be replaced explicitly — deleted first, since the
    new one has the same name. A new JobSet is a new run (new UID, fresh checkpoint directory)."""
    jobset = objects.apply(lambda objs: only_jobset(name, objs))
    return k8s.apiextensions.CustomResource(
        name,
        api_version=JOBSET_API_VERSION,
        kind="JobSet",
        metadata=jobset.apply(lambda o: o["metadata"]),
        spec=jobset.apply(lambda o: o["spec"]),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(replace_on_changes=["spec"], delete_before_replace=True)),
    )


def _home_claim(team: pulumi.Resource, group: str, namespace: str, claim_name: str, objects: pulumi.Output,
                opts: pulumi.ResourceOptions) -> k8s.core.v1.PersistentVolumeClaim:
    """A dev environment's home claim as a resource of its own, retained on delete: removing or
    renaming the environment must not delete a person's files (a ConfigGroup child would be deleted
    with it). Added back, the environment's claim is adopted again (server-side apply upserts).

    Earlier versions kept the claim in the workload's ConfigGroup (yaml/v2 names it
    `<group>:<namespace>/<name>`): the alias makes this resource take that one over instead of
    deleting it, and with it the EFS access point and the files."""
    claim = objects.apply(lambda objs: next(o for o in objs if o["kind"] == "PersistentVolumeClaim"))
    was_in_group = pulumi.Alias(name=f"{group}:{namespace}/{claim_name}",
                                parent=pulumi.create_urn(group, "kubernetes:yaml/v2:ConfigGroup", parent=team))
    return k8s.core.v1.PersistentVolumeClaim(
        f"{group}-home",
        metadata=claim.apply(lambda o: o["metadata"]),
        spec=claim.apply(lambda o: o["spec"]),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(retain_on_delete=True, aliases=[was_in_group])),
    )


class Team(pulumi.ComponentResource):
    """Creates, as children:
    - `<name>-platform`: StackReference to the platform stack;
    - `<name>-k8s`: a Kubernetes provider from the platform's kubeconfig;
    - `<name>-secret-<secret>`: a Kubernetes Secret per entry of `secrets` (values stay Pulumi secrets);
    - `<name>-<workload>-token` (RandomPassword) and `<name>-<workload>-token-secret` (the Secret
      `<workload>-token`) for every devEnvironment: its access token, generated, never in config;
    - `<name>-<workload>-home`: every devEnvironment's home PersistentVolumeClaim, retained on delete;
    - `<name>-<workload>`: a ConfigGroup of each workload's rendered objects; for distributedTraining
      the JobSet itself (replaced, not patched, when it changes).

    Outputs: `namespace`, `workloads` (names).
    """

    def __init__(self, name: str, spec: TeamSpec, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:team:Team", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.platform_ref = pulumi.StackReference(f"{name}-platform", stack_name=spec.platform_stack, opts=child)
        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=self.platform_ref.require_output(pv.OUTPUT_KUBECONFIG), opts=child
        )
        outputs = {key: self.platform_ref.require_output(key) for key in pv.REQUIRED_OUTPUTS}
        outputs.update({key: self.platform_ref.get_output(key) for key in pv.OPTIONAL_OUTPUTS})
        view = pulumi.Output.all(**outputs).apply(lambda values: pv.PlatformView.from_outputs(values, spec.platform_stack))
        # The platform names the namespace; until its outputs are checked, fall back to the convention.
        namespace = view.apply(lambda p: p.teams[spec.name].namespace if spec.name in p.teams else spec.namespace)
        in_cluster = pulumi.ResourceOptions(parent=self, provider=self.provider)

        self.secrets = {
            secret: k8s.core.v1.Secret(
                f"{name}-secret-{secret}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=secret, namespace=namespace, labels=_labels(spec, "secret")),
                type="Opaque",
                string_data={key: pulumi.Output.secret(value.get_secret_value()) for key, value in keys.items()},
                opts=in_cluster,
            )
            for secret, keys in spec.secrets.items()
        }
        self.tokens = {}
        for workload in spec.workloads:
            if isinstance(workload, DevEnvironmentWorkload):
                password = random.RandomPassword(
                    f"{name}-{workload.name}-token", length=TOKEN_LENGTH, special=False, opts=child
                )
                self.tokens[workload.name] = k8s.core.v1.Secret(
                    f"{name}-{workload.name}-token-secret",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=token_secret_name(workload.name), namespace=namespace,
                        labels=_labels(spec, "devEnvironment", workload.name),
                    ),
                    type="Opaque",
                    # The SDK marks RandomPassword.result secret; say so here too so no path leaks it.
                    string_data={TOKEN_SECRET_KEY: pulumi.Output.secret(password.result)},
                    opts=in_cluster,
                )

        # Cross-stack checks run when the platform's outputs arrive; a failure stops the update
        # before any workload object is sent to the cluster.
        rendered = view.apply(lambda platform: render_team(spec, platform))
        self.workloads = {}
        for w in spec.workloads:
            # A pod whose Secret does not exist yet fails to start: create the Secrets first.
            needs = [self.secrets[ref.secret] for ref in w.secret_env.values() if ref.secret in self.secrets]
            if w.name in self.tokens:
                needs.append(self.tokens[w.name])
            objects = rendered.apply(lambda by_name, n=w.name: by_name[n])
            if isinstance(w, DevEnvironmentWorkload):
                needs.append(_home_claim(self, f"{name}-{w.name}", spec.namespace, home_claim_name(w.name), objects, in_cluster))
                objects = objects.apply(lambda objs: [o for o in objs if o["kind"] != "PersistentVolumeClaim"])
            if isinstance(w, DistributedTrainingWorkload):
                self.workloads[w.name] = _jobset(f"{name}-{w.name}", objects, pulumi.ResourceOptions(
                    parent=self, provider=self.provider, depends_on=needs))
                continue
            self.workloads[w.name] = k8s.yaml.v2.ConfigGroup(
                f"{name}-{w.name}",
                objs=objects,
                # Pulumi would otherwise wait for a Job to complete (and fail the update after 10
                # minutes): a training run is started by `pulumi up`, not awaited by it.
                skip_await=True,
                opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=needs),
            )
        # The namespace the platform exported for the team (the convention only until its outputs arrive).
        self.namespace = namespace
        self.register_outputs({"namespace": self.namespace, "workloads": sorted(self.workloads)})
