"""The platform's monitoring: kube-prometheus-stack (Prometheus, Alertmanager, Grafana) and the NVIDIA
dcgm-exporter as pinned Helm releases (versions.py), the scrape objects cloudml owns (dcgm-exporter's
ServiceMonitor, the model services' PodMonitor), the alert rules and dashboards
(components.monitoring), alert routing to an encrypted SNS topic (and optionally Slack; teams with
their own alertEmails also to a topic of their own), and the
CloudWatch alarms for what Prometheus cannot see.

Namespaces: the stack runs in `monitoring` (Pod Security `baseline`, warned at `restricted`; team
NetworkPolicies admit scrapes from it, tenancy.MONITORING_NAMESPACE). The two DaemonSets that need
the host — node-exporter (host network, PID and filesystem) and dcgm-exporter (kubelet's
pod-resources socket, SYS_ADMIN) — run in the privileged system namespace instead, so no
privileged pod can start in the namespace whose pods may reach every team's pods.

The value builders and object renderers are pure functions of the spec (tests pin them).
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.labels import GPU_PRESENT_LABEL, GPU_TAINT_KEY, MANAGED_BY, PART_OF, SYSTEM_NAMESPACE, TEAM_LABEL, WORKLOAD_LABEL
from components.monitoring import dashboard_config_maps, kube_state_metrics_allowlist, prometheus_rules
from components.monitoring.dashboards import SIDECAR_LABEL, SIDECAR_LABEL_VALUE
from components.platform import versions
from components.platform.addons import IRSA_ANNOTATION, RELEASE_TIMEOUT_SECONDS, SYSTEM_POOL_SELECTOR
from components.platform.cluster_addons import DEFAULT_STORAGE_CLASS
from components.platform.irsa import ServiceAccountRole
from components.platform.monitoring_alerting import (
    ASG_METRICS_PARAMETER,
    ASG_METRICS_SCHEDULE,
    ASG_METRICS_WAIT_SECONDS,
    ASG_NOTIFICATIONS,
    EKS_ALARMS,
    HEARTBEAT_ALARM,
    SLACK_SECRET,
    SLACK_SECRET_KEY,
    alertmanager_config,
    alerts_key_policy,
    automation_trust_policy,
    enable_group_metrics_document,
    group_metrics_policy,
    pool_at_max_alarm,
    publish_policy,
)
from components.platform.tenancy import MONITORING_NAMESPACE
from components.spec import PlatformSpec, team_namespace
from components.workloads.model_service import METRICS_PATH

KPS_RELEASE = "kube-prometheus-stack"
DCGM_RELEASE = "dcgm-exporter"
# The chart names every object `<fullname>-<component>`; fixing the fullname fixes the names below.
KPS_FULLNAME = "kube-prometheus-stack"
PROMETHEUS_SERVICE = f"{KPS_FULLNAME}-prometheus"
PROMETHEUS_PORT = 9090
PROMETHEUS_URL = f"http://{PROMETHEUS_SERVICE}.{MONITORING_NAMESPACE}.svc:{PROMETHEUS_PORT}"
ALERTMANAGER_SERVICE_ACCOUNT = f"{KPS_FULLNAME}-alertmanager"  # the IRSA role trusts exactly this account
ALERTMANAGER_CONFIG_SECRET = "alertmanager-cloudml"
ALERTMANAGER_CONFIG_KEY = "alertmanager.yaml"  # the key prometheus-operator reads from configSecret
GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_USER_KEY, GRAFANA_PASSWORD_KEY = "admin-user", "admin-password"
GRAFANA_PASSWORD_LENGTH = 32
# The Grafana sidecar loads ConfigMaps with this label (kube-prometheus-stack's default label and
# value); the dashboards of components.monitoring carry it.
DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE = SIDECAR_LABEL, SIDECAR_LABEL_VALUE
# EKS runs etcd, the scheduler and the controller manager out of reach, and kube-proxy serves its
# metrics on localhost only: their scrapes and rules would only ever fire "target down".
UNREACHABLE_COMPONENTS = ("kubeEtcd", "kubeControllerManager", "kubeScheduler", "kubeProxy")
DISABLED_DEFAULT_RULES = ("etcd", "kubeControllerManager", "kubeSchedulerAlerting", "kubeSchedulerRecording",
                          "kubeProxy", "windows")
# dcgm-exporter: the chart's Service (templates/service.yaml) carries its selector labels
# (`app.kubernetes.io/name` = chart name, `app.kubernetes.io/instance` = release) plus this
# component label, and names its port `metrics`.
DCGM_SERVICE_PORT = "metrics"
DCGM_SCRAPE_INTERVAL = "15s"
MODEL_SERVICE_COMPONENT = "modelService"  # app.kubernetes.io/component of model-service pods (render.py)


def _labels(platform: str, name: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": f"{platform}-{name}",
        "app.kubernetes.io/component": "monitoring",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }


def namespace_labels(platform: str) -> dict[str, str]:
    """Labels of the `monitoring` namespace: Pod Security baseline enforced, restricted reported."""
    return {
        **_labels(platform, MONITORING_NAMESPACE),
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/enforce-version": "latest",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }


def kube_prometheus_stack_values(spec: PlatformSpec, alertmanager_role_arn: pulumi.Input[str]) -> dict:
    """Values of the kube-prometheus-stack chart."""
    monitoring = spec.monitoring
    alertmanager_spec: dict = {
        # Our Secret holds the whole configuration; the chart's own config Secret is not made.
        "useExistingSecret": True,
        "configSecret": ALERTMANAGER_CONFIG_SECRET,
        "nodeSelector": SYSTEM_POOL_SELECTOR,
    }
    if monitoring.slack_webhook_url is not None:
        alertmanager_spec["secrets"] = [SLACK_SECRET]  # mounted at /etc/alertmanager/secrets/<name>/
    return {
        "fullnameOverride": KPS_FULLNAME,
        "crds": {"enabled": True},
        "defaultRules": {"rules": {rule: False for rule in DISABLED_DEFAULT_RULES}},
        **{component: {"enabled": False} for component in UNREACHABLE_COMPONENTS},
        "prometheusOperator": {
            "nodeSelector": SYSTEM_POOL_SELECTOR,
            "admissionWebhooks": {"patch": {"nodeSelector": SYSTEM_POOL_SELECTOR}},
        },
        "prometheus": {"prometheusSpec": {
            "retention": f"{monitoring.retention_days}d",
            # Select every PrometheusRule, ServiceMonitor, PodMonitor and Probe in every namespace,
            # not only those labelled with this release.
            "ruleSelectorNilUsesHelmValues": False,
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "podMonitorSelectorNilUsesHelmValues": False,
            "probeSelectorNilUsesHelmValues": False,
            "storageSpec": {"volumeClaimTemplate": {"spec": {
                "storageClassName": DEFAULT_STORAGE_CLASS,  # encrypted gp3 (cluster_addons.py)
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{monitoring.volume_size_gib}Gi"}},
            }}},
            "nodeSelector": SYSTEM_POOL_SELECTOR,
        }},
        "alertmanager": {
            "enabled": True,
            "serviceAccount": {"create": True, "name": ALERTMANAGER_SERVICE_ACCOUNT,
                               "annotations": {IRSA_ANNOTATION: alertmanager_role_arn}},
            "alertmanagerSpec": alertmanager_spec,
        },
        "grafana": {
            # The generated password lives in a Secret only; the chart's default password is unused.
            "admin": {"existingSecret": GRAFANA_ADMIN_SECRET, "userKey": GRAFANA_USER_KEY,
                      "passwordKey": GRAFANA_PASSWORD_KEY},
            "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": DASHBOARD_LABEL_VALUE,
                                       "searchNamespace": MONITORING_NAMESPACE}},
            "nodeSelector": SYSTEM_POOL_SELECTOR,
        },
        # The rules join GPU series to teams, workloads and pools through these Kubernetes labels.
        "kube-state-metrics": {"nodeSelector": SYSTEM_POOL_SELECTOR,
                               "metricLabelsAllowlist": kube_state_metrics_allowlist()},
        # Every node, GPU nodes included (the chart tolerates NoSchedule taints); host access, so
        # in the privileged system namespace.
        "prometheus-node-exporter": {"namespaceOverride": SYSTEM_NAMESPACE},
    }


def dcgm_exporter_values() -> dict:
    """Values of the dcgm-exporter chart. Its DaemonSet always sets DCGM_EXPORTER_KUBERNETES=true,
    so GPU series carry the `namespace`, `pod` and `container` of the pod using the GPU."""
    return {
        "nodeSelector": {GPU_PRESENT_LABEL: "true"},
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "service": {"enable": True},
        # cloudml's own ServiceMonitor (dcgm_scrape_objects) replaces the chart's: it is visible to
        # the plan and tests, and it keeps the workload labels (honorLabels).
        "serviceMonitor": {"enabled": False},
    }


def dcgm_service_labels(release: str = DCGM_RELEASE) -> dict[str, str]:
    """The labels the chart gives its Service (templates/_helpers.tpl selectorLabels + component)."""
    return {"app.kubernetes.io/name": "dcgm-exporter", "app.kubernetes.io/instance": release,
            "app.kubernetes.io/component": "dcgm-exporter"}


def scrape_objects(spec: PlatformSpec) -> list[dict]:
    """cloudml's ServiceMonitor of dcgm-exporter and PodMonitor of the teams' model services."""
    service_monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": {"name": DCGM_RELEASE, "namespace": MONITORING_NAMESPACE, "labels": _labels(spec.name, DCGM_RELEASE)},
        "spec": {
            "namespaceSelector": {"matchNames": [SYSTEM_NAMESPACE]},
            "selector": {"matchLabels": dcgm_service_labels()},
            "endpoints": [{
                "port": DCGM_SERVICE_PORT,
                "path": "/metrics",
                "interval": DCGM_SCRAPE_INTERVAL,
                # The exporter's `namespace`/`pod` name the GPU's workload; without honorLabels they
                # would become exported_namespace/exported_pod and every per-workload query break.
                "honorLabels": True,
            }],
        },
    }
    pod_monitor = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": {"name": "model-services", "namespace": MONITORING_NAMESPACE,
                     "labels": _labels(spec.name, "model-services")},
        "spec": {
            # Team namespaces only: another namespace's pods cannot claim to be a team's service.
            "namespaceSelector": {"matchNames": sorted(team_namespace(team) for team in spec.teams)},
            "selector": {"matchLabels": {"app.kubernetes.io/component": MODEL_SERVICE_COMPONENT}},
            "podMetricsEndpoints": [{
                "port": "http",
                "path": METRICS_PATH,
                "interval": "30s",
                # Alert routing and dashboards group by team and workload.
                "relabelings": [
                    {"sourceLabels": [f"__meta_kubernetes_pod_label_{_meta(TEAM_LABEL)}"], "targetLabel": "team"},
                    {"sourceLabels": [f"__meta_kubernetes_pod_label_{_meta(WORKLOAD_LABEL)}"], "targetLabel": "workload"},
                ],
            }],
        },
    }
    return [service_monitor, pod_monitor]


def _meta(label: str) -> str:
    """A label key as Prometheus's Kubernetes discovery writes it in meta labels."""
    return "".join(c if c.isalnum() else "_" for c in label)


def rule_objects(spec: PlatformSpec) -> list[dict]:
    """The PrometheusRules and dashboard ConfigMaps (components.monitoring), namespace `monitoring`."""
    return prometheus_rules(spec) + dashboard_config_maps(spec)


class Monitoring(pulumi.ComponentResource):
    """Creates `<name>-namespace` (`monitoring`), `<name>-alerts-key` (KMS), `<name>-alerts` (SNS topic
    `<platform>-alerts`), `<name>-heartbeat` (SNS topic `<platform>-heartbeat`: the Watchdog's),
    `<name>-alerts-email-<i>` (email subscriptions), `<name>-team-alerts-<team>` (SNS topic
    `<platform>-alerts-<team>`, for each team with alertEmails) with `<name>-team-alerts-<team>-email-<i>`,
    `<name>-am-irsa` (IRSA role of Alertmanager: sns:Publish on those topics), `<name>-grafana-password` (RandomPassword),
    `<name>-grafana-admin` and `<name>-alertmanager-config` (Secrets), `<name>-alertmanager-slack`
    (Secret; only with a Slack webhook, else None), `<name>-kube-prometheus-stack` and
    `<name>-dcgm-exporter` (Helm releases), `<name>-scrape` (ConfigGroup: ServiceMonitor and
    PodMonitor), `<name>-rules` (ConfigGroup: PrometheusRules and dashboards),
    `<name>-<alarm>` (CloudWatch alarms on the control plane), `<name>-alerting-heartbeat` (CloudWatch
    alarm: the heartbeat stopped) and `<name>-gpu-launch-errors`
    (Auto Scaling notifications of the GPU groups; None without GPU pools). With GPU pools also
    `<name>-asg-metrics` (SSM Automation runbook enabling group metrics on an ASG),
    `<name>-asg-metrics-role` and `<name>-asg-metrics-policy` (its role: EnableMetricsCollection on
    the GPU groups only), for each GPU pool `<name>-asg-metrics-<pool>` (State Manager association
    running it on the pool's ASG) and, unless the pool's min equals its max, `<name>-gpu-<pool>-at-max`
    (CloudWatch alarm: desired capacity at the pool's max for 30 minutes); all None / empty without.

    Outputs: `prometheus_url`, `alert_topic_arn`.
    """

    def __init__(self, name: str, spec: PlatformSpec, *, provider: k8s.Provider, cluster_name: pulumi.Input[str],
                 region: str, gpu_node_groups: dict[str, aws.eks.NodeGroup], oidc_provider_arn: pulumi.Input[str],
                 oidc_issuer_url: pulumi.Input[str], after: Sequence[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def k8s_opts(*deps: pulumi.Resource | None) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, provider=provider,
                                          depends_on=[*after, *(d for d in deps if d is not None)])

        # --- alert topic and Alertmanager's identity ---
        self.alertmanager_role = ServiceAccountRole(
            f"{name}-am-irsa", namespace=MONITORING_NAMESPACE, service_account=ALERTMANAGER_SERVICE_ACCOUNT,
            oidc_provider_arn=oidc_provider_arn, oidc_issuer_url=oidc_issuer_url, opts=child)
        invoke = pulumi.InvokeOptions(parent=self)
        account = aws.get_caller_identity_output(opts=invoke).account_id
        partition = aws.get_partition_output(opts=invoke)
        # The key policy names Auto Scaling's service-linked role, which AWS creates with the first
        # Auto Scaling group (the GPU node groups' ones): KMS rejects a policy naming a principal that
        # does not exist yet, so the key waits for the groups (and has no such statement without them).
        groups = [group for _, group in sorted(gpu_node_groups.items())]
        self.alerts_key = aws.kms.Key(
            f"{name}-alerts-key",
            description=f"Encryption at rest of the {spec.name} platform's alert topics",
            enable_key_rotation=True,
            policy=pulumi.Output.all(account, partition.partition, partition.dns_suffix, self.alertmanager_role.arn).apply(
                lambda args: alerts_key_policy(args[0], args[1], region, args[2], args[3], autoscaling=bool(groups))),
            opts=pulumi.ResourceOptions(parent=self, depends_on=groups))
        self.alert_topic = aws.sns.Topic(f"{name}-alerts", name=f"{spec.name}-alerts",
                                         kms_master_key_id=self.alerts_key.arn, opts=child)
        # Alertmanager's Watchdog heartbeat (dead man's switch); nobody subscribes, a CloudWatch
        # alarm watches that it keeps being published to.
        self.heartbeat_topic = aws.sns.Topic(f"{name}-heartbeat", name=f"{spec.name}-heartbeat",
                                             kms_master_key_id=self.alerts_key.arn, opts=child)
        self.email_subscriptions = [
            aws.sns.TopicSubscription(f"{name}-alerts-email-{i}", topic=self.alert_topic.arn, protocol="email",
                                      endpoint=str(email), opts=child)
            for i, email in enumerate(spec.monitoring.alert_emails)
        ]
        # Teams with their own alertEmails get their own topic (same key, so the key policy already
        # admits Alertmanager and nobody else new); the platform's topic still gets every alert.
        alert_teams = sorted(team for team, tenant in spec.teams.items() if tenant.alert_emails)
        self.team_topics = {
            team: aws.sns.Topic(f"{name}-team-alerts-{team}", name=f"{spec.name}-alerts-{team}",
                                kms_master_key_id=self.alerts_key.arn, opts=child)
            for team in alert_teams
        }
        self.team_email_subscriptions = [
            aws.sns.TopicSubscription(f"{name}-team-alerts-{team}-email-{i}", topic=self.team_topics[team].arn,
                                      protocol="email", endpoint=str(email), opts=child)
            for team in alert_teams for i, email in enumerate(spec.teams[team].alert_emails)
        ]
        team_topic_arns = [self.team_topics[team].arn for team in alert_teams]
        self.alertmanager_policy = aws.iam.RolePolicy(
            f"{name}-am-irsa-publish", role=self.alertmanager_role.name,
            policy=pulumi.Output.all(self.alert_topic.arn, self.heartbeat_topic.arn, *team_topic_arns).apply(
                lambda arns: publish_policy(arns[0], arns[1], list(arns[2:]))),
            opts=child)

        # --- in-cluster secrets ---
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=MONITORING_NAMESPACE, labels=namespace_labels(spec.name)),
            opts=k8s_opts())
        in_namespace = k8s_opts(self.namespace)
        self.grafana_password = random.RandomPassword(f"{name}-grafana-password", length=GRAFANA_PASSWORD_LENGTH,
                                                      special=False, opts=child)
        self.grafana_admin = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GRAFANA_ADMIN_SECRET, namespace=MONITORING_NAMESPACE,
                                                labels=_labels(spec.name, "grafana")),
            type="Opaque",
            string_data={GRAFANA_USER_KEY: "admin", GRAFANA_PASSWORD_KEY: pulumi.Output.secret(self.grafana_password.result)},
            opts=in_namespace)
        teams = list(spec.teams)
        slack = spec.monitoring.slack_webhook_url is not None
        self.alertmanager_config = k8s.core.v1.Secret(
            f"{name}-alertmanager-config",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ALERTMANAGER_CONFIG_SECRET, namespace=MONITORING_NAMESPACE,
                                                labels=_labels(spec.name, "alertmanager")),
            type="Opaque",
            string_data={ALERTMANAGER_CONFIG_KEY: pulumi.Output.all(self.alert_topic.arn, self.heartbeat_topic.arn,
                                                                    *team_topic_arns).apply(
                lambda arns: alertmanager_config(spec.name, region, arns[0], teams, slack, heartbeat_topic_arn=arns[1],
                                                 team_topics=dict(zip(alert_teams, arns[2:]))))},
            opts=in_namespace)
        self.alertmanager_slack = k8s.core.v1.Secret(
            f"{name}-alertmanager-slack",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=SLACK_SECRET, namespace=MONITORING_NAMESPACE,
                                                labels=_labels(spec.name, "alertmanager")),
            type="Opaque",
            string_data={SLACK_SECRET_KEY: pulumi.Output.secret(spec.monitoring.slack_webhook_url.get_secret_value())},
            opts=in_namespace) if slack else None

        # --- releases ---
        def release(role: str, release_name: str, chart: versions.HelmChart, namespace: str, values: dict,
                    *deps: pulumi.Resource | None) -> k8s.helm.v3.Release:
            return k8s.helm.v3.Release(
                f"{name}-{role}", name=release_name, chart=chart.chart, version=chart.version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo), namespace=namespace,
                values=values, timeout=RELEASE_TIMEOUT_SECONDS, max_history=10, opts=k8s_opts(*deps))

        self.kube_prometheus_stack = release(
            "kube-prometheus-stack", KPS_RELEASE, versions.KUBE_PROMETHEUS_STACK, MONITORING_NAMESPACE,
            kube_prometheus_stack_values(spec, self.alertmanager_role.arn), self.namespace, self.grafana_admin,
            self.alertmanager_config, self.alertmanager_slack, self.alertmanager_policy)
        self.dcgm_exporter = release("dcgm-exporter", DCGM_RELEASE, versions.DCGM_EXPORTER, SYSTEM_NAMESPACE,
                                     dcgm_exporter_values())
        # The monitoring CRDs come with kube-prometheus-stack: these objects go after it.
        self.scrape = k8s.yaml.v2.ConfigGroup(f"{name}-scrape", objs=scrape_objects(spec),
                                              opts=k8s_opts(self.kube_prometheus_stack, self.dcgm_exporter))
        self.rules = k8s.yaml.v2.ConfigGroup(f"{name}-rules", objs=rule_objects(spec),
                                             opts=k8s_opts(self.kube_prometheus_stack))

        # --- CloudWatch: what Prometheus cannot see ---
        self.alarms = {
            alarm.role: aws.cloudwatch.MetricAlarm(
                f"{name}-{alarm.role}", name=f"{spec.name}-{alarm.role}", namespace="AWS/EKS", metric_name=alarm.metric,
                dimensions={"ClusterName": cluster_name}, statistic=alarm.statistic, period=alarm.period,
                evaluation_periods=alarm.evaluation_periods, threshold=alarm.threshold,
                comparison_operator=alarm.comparison, treat_missing_data="notBreaching",
                alarm_description=alarm.description, alarm_actions=[self.alert_topic.arn],
                ok_actions=[self.alert_topic.arn], opts=child)
            for alarm in EKS_ALARMS
        }
        beat = HEARTBEAT_ALARM
        self.heartbeat_alarm = aws.cloudwatch.MetricAlarm(
            f"{name}-{beat.role}", name=f"{spec.name}-{beat.role}", namespace="AWS/SNS", metric_name=beat.metric,
            dimensions={"TopicName": self.heartbeat_topic.name}, statistic=beat.statistic, period=beat.period,
            evaluation_periods=beat.evaluation_periods, threshold=beat.threshold, comparison_operator=beat.comparison,
            # No data is the failure this alarm is for.
            treat_missing_data="breaching", alarm_description=beat.description,
            alarm_actions=[self.alert_topic.arn], ok_actions=[self.alert_topic.arn], opts=child)
        pool_asgs = {pool: group.resources.apply(lambda resources: resources[0].autoscaling_groups[0].name)
                     for pool, group in sorted(gpu_node_groups.items())}
        asg_names = list(pool_asgs.values())
        self.launch_errors = aws.autoscaling.Notification(
            f"{name}-gpu-launch-errors", group_names=asg_names, notifications=ASG_NOTIFICATIONS,
            topic_arn=self.alert_topic.arn, opts=child) if asg_names else None
        self._pool_at_max_alarms(name, spec, pool_asgs, account, partition, region, child)

        self.prometheus_url = PROMETHEUS_URL
        self.alert_topic_arn = self.alert_topic.arn
        self.register_outputs({"prometheus_url": self.prometheus_url, "alert_topic_arn": self.alert_topic_arn})

    def _pool_at_max_alarms(self, name: str, spec: PlatformSpec, pool_asgs: dict[str, pulumi.Output[str]],
                            account: pulumi.Output[str], partition, region: str, child: pulumi.ResourceOptions) -> None:
        """Group metrics on each GPU pool's ASG (EKS leaves them off: monitoring_alerting.py says how
        they are turned on) and the alarm on them."""
        self.asg_metrics_document = self.asg_metrics_role = self.asg_metrics_policy = None
        self.asg_metrics: dict[str, aws.ssm.Association] = {}
        self.pool_at_max_alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        if not pool_asgs:
            return
        self.asg_metrics_document = aws.ssm.Document(
            f"{name}-asg-metrics", name=f"{spec.name}-enable-asg-metrics", document_type="Automation",
            document_format="JSON", content=enable_group_metrics_document(), opts=child)
        self.asg_metrics_role = aws.iam.Role(
            f"{name}-asg-metrics-role",
            description=f"Runs the {spec.name} runbook enabling group metrics on the GPU node groups' Auto Scaling groups",
            assume_role_policy=pulumi.Output.all(account, partition.dns_suffix).apply(
                lambda args: automation_trust_policy(args[0], args[1])),
            opts=child)
        self.asg_metrics_policy = aws.iam.RolePolicy(
            f"{name}-asg-metrics-policy", role=self.asg_metrics_role.name,
            policy=pulumi.Output.all(partition.partition, account, *pool_asgs.values()).apply(
                lambda args: group_metrics_policy(args[0], region, args[1], list(args[2:]))),
            opts=child)
        pools = {pool.name: pool for pool in spec.gpu_pools}
        for pool, asg_name in pool_asgs.items():
            self.asg_metrics[pool] = aws.ssm.Association(
                f"{name}-asg-metrics-{pool}", association_name=f"{spec.name}-asg-metrics-{pool}",
                name=self.asg_metrics_document.name,
                parameters={"AutomationAssumeRole": self.asg_metrics_role.arn},
                automation_target_parameter_name=ASG_METRICS_PARAMETER,
                targets=[aws.ssm.AssociationTargetArgs(key="ParameterValues", values=[asg_name])],
                # `pulumi up` fails loudly when the runbook did not enable the metrics.
                wait_for_success_timeout_seconds=ASG_METRICS_WAIT_SECONDS,
                schedule_expression=ASG_METRICS_SCHEDULE,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.asg_metrics_policy]))
            if pools[pool].min == pools[pool].max:
                continue  # a fixed-size pool is always at its max: nothing to alarm on
            alarm = pool_at_max_alarm(pool, pools[pool].max)
            self.pool_at_max_alarms[pool] = aws.cloudwatch.MetricAlarm(
                f"{name}-{alarm.role}", name=f"{spec.name}-{alarm.role}", namespace="AWS/AutoScaling",
                metric_name=alarm.metric, dimensions={"AutoScalingGroupName": asg_name}, statistic=alarm.statistic,
                period=alarm.period, evaluation_periods=alarm.evaluation_periods, threshold=alarm.threshold,
                comparison_operator=alarm.comparison,
                # No data means metrics collection is off: INSUFFICIENT_DATA shows it, OK would hide it.
                treat_missing_data="missing", alarm_description=alarm.description,
                alarm_actions=[self.alert_topic.arn], ok_actions=[self.alert_topic.arn],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.asg_metrics[pool]]))
