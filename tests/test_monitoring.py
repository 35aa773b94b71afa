"""The platform's monitoring component under Pulumi mocks: its children, the pinned releases and their
security-relevant values, the secrets it keeps out of the plan, the alert topic with its key and
IRSA policy, cloudml's scrape objects (checked against the chart's Service and the CRD schemas),
the CloudWatch alarms, and the `prometheusUrl` output team stacks scale on."""

from __future__ import annotations

import copy
import json
import re

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
import yaml
from conftest import run_components, sample_config
from k8s_schema import schema_errors
from test_alertmanager import run_amtool

from components.errors import ConfigError
from components.labels import SYSTEM_NAMESPACE
from components.monitoring import dashboard_config_maps, kube_state_metrics_allowlist, prometheus_rules
from components.platform import not_yet_deployed, versions
from components.platform.irsa import trust_policy
from components.platform.monitoring import (
    PROMETHEUS_URL,
    Monitoring,
    scrape_objects,
)
from components.spec import load_platform

NAME = "ml-dev-monitoring"
PROVIDER_ARN = "arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/ABC"
ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/ABC"
TOPIC_ARN = "arn:aws:sns:us-west-2:111122223333:ml-dev-alerts"
HEARTBEAT_ARN = "arn:aws:sns:us-west-2:111122223333:ml-dev-heartbeat"
VISION_TOPIC_ARN = "arn:aws:sns:us-west-2:111122223333:ml-dev-alerts-vision"
SYSTEM_POOL = {"cloudml.io/pool": "system"}
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"


def platform_raw() -> dict:
    return copy.deepcopy(sample_config("platform-dev")["cloudml:platform"])


def build(raw: dict | None = None) -> tuple[dict[str, dict], dict]:
    """Run Monitoring for the sample platform (or `raw`) under mocks; return the records and the
    role ARNs, ASG names and Alertmanager Secret data it saw."""
    spec = load_platform(raw or platform_raw())
    seen: dict = {}

    def program():
        provider = k8s.Provider("p", kubeconfig="{}")
        groups = {
            pool.name: aws.eks.NodeGroup(f"group-{pool.name}", cluster_name="ml-dev", node_role_arn="arn:aws:iam::1:role/n",
                                         subnet_ids=["subnet-1"], scaling_config={"min_size": 0, "max_size": 1, "desired_size": 0})
            for pool in spec.gpu_pools
        }
        for pool, group in groups.items():
            group.resources.apply(lambda r, p=pool: seen.setdefault("asgs", {}).__setitem__(p, r[0].autoscaling_groups[0].name))
        after = aws.iam.Role("after", assume_role_policy="{}")
        monitoring = Monitoring(NAME, spec, provider=provider, cluster_name=pulumi.Output.from_input("ml-dev"),
                                region="us-west-2", gpu_node_groups=groups, oidc_provider_arn=PROVIDER_ARN,
                                oidc_issuer_url=ISSUER, after=[after])
        monitoring.alertmanager_role.arn.apply(lambda arn: seen.__setitem__("role", arn))
        monitoring.alertmanager_config.string_data.apply(lambda data: seen.__setitem__("alertmanager", data))
        if monitoring.asg_metrics_role is not None:
            monitoring.asg_metrics_role.arn.apply(lambda arn: seen.__setitem__("asg_metrics_role", arn))
        assert monitoring.prometheus_url == PROMETHEUS_URL

    return run_components(program), seen


@pytest.fixture(scope="module")
def sample():
    return build()


def values(resources: dict, role: str) -> dict:
    return resources[f"{NAME}-{role}"]["inputs"]["values"]


def test_children_are_exactly_these(sample):
    """The sample platform (one alert email, vision with one of its own, no Slack, two GPU pools) gets
    exactly these children."""
    resources, _ = sample
    children = {n: r["type"] for n, r in resources.items() if n.startswith(NAME)}
    assert children == {
        NAME: "cloudml:platform:Monitoring",
        f"{NAME}-am-irsa": "cloudml:platform:ServiceAccountRole",
        f"{NAME}-am-irsa-role": "aws:iam/role:Role",
        f"{NAME}-am-irsa-publish": "aws:iam/rolePolicy:RolePolicy",
        f"{NAME}-alerts-key": "aws:kms/key:Key",
        f"{NAME}-alerts": "aws:sns/topic:Topic",
        f"{NAME}-heartbeat": "aws:sns/topic:Topic",
        f"{NAME}-alerts-email-0": "aws:sns/topicSubscription:TopicSubscription",
        f"{NAME}-team-alerts-vision": "aws:sns/topic:Topic",
        f"{NAME}-team-alerts-vision-email-0": "aws:sns/topicSubscription:TopicSubscription",
        f"{NAME}-namespace": "kubernetes:core/v1:Namespace",
        f"{NAME}-grafana-password": "random:index/randomPassword:RandomPassword",
        f"{NAME}-grafana-admin": "kubernetes:core/v1:Secret",
        f"{NAME}-alertmanager-config": "kubernetes:core/v1:Secret",
        f"{NAME}-kube-prometheus-stack": "kubernetes:helm.sh/v3:Release",
        f"{NAME}-dcgm-exporter": "kubernetes:helm.sh/v3:Release",
        f"{NAME}-scrape": "kubernetes:yaml/v2:ConfigGroup",
        f"{NAME}-rules": "kubernetes:yaml/v2:ConfigGroup",
        f"{NAME}-apiserver-5xx": "aws:cloudwatch/metricAlarm:MetricAlarm",
        f"{NAME}-unschedulable-pods": "aws:cloudwatch/metricAlarm:MetricAlarm",
        f"{NAME}-alerting-heartbeat": "aws:cloudwatch/metricAlarm:MetricAlarm",
        f"{NAME}-gpu-launch-errors": "aws:autoscaling/notification:Notification",
        f"{NAME}-asg-metrics": "aws:ssm/document:Document",
        f"{NAME}-asg-metrics-role": "aws:iam/role:Role",
        f"{NAME}-asg-metrics-policy": "aws:iam/rolePolicy:RolePolicy",
        f"{NAME}-asg-metrics-a10g": "aws:ssm/association:Association",
        f"{NAME}-asg-metrics-l4-spot": "aws:ssm/association:Association",
        f"{NAME}-gpu-a10g-at-max": "aws:cloudwatch/metricAlarm:MetricAlarm",
        f"{NAME}-gpu-l4-spot-at-max": "aws:cloudwatch/metricAlarm:MetricAlarm",
    }


def test_releases_are_pinned_in_their_namespaces(sample):
    """kube-prometheus-stack in `monitoring`, dcgm-exporter in the privileged system namespace, each
    at the exact version versions.py pins, from its repository, under a fixed release name."""
    resources, _ = sample
    for role, chart, namespace in (("kube-prometheus-stack", versions.KUBE_PROMETHEUS_STACK, "monitoring"),
                                   ("dcgm-exporter", versions.DCGM_EXPORTER, SYSTEM_NAMESPACE)):
        inputs = resources[f"{NAME}-{role}"]["inputs"]
        assert re.fullmatch(r"\d+\.\d+\.\d+", chart.version)
        assert (inputs["name"], inputs["chart"], inputs["version"], inputs["namespace"]) == (role, chart.chart, chart.version, namespace)
        assert inputs["repositoryOpts"] == {"repo": chart.repo}
    assert versions.DCGM_EXPORTER.repo == "https://nvidia.github.io/dcgm-exporter/helm-charts"
    assert versions.KUBE_PROMETHEUS_STACK.repo == "https://prometheus-community.github.io/helm-charts"


def test_prometheus_keeps_its_data_and_selects_every_namespace(sample):
    """Retention and the gp3 volume come from config; rules and monitors of every namespace are
    selected, not only those labelled with the release; every controller runs on the system pool."""
    resources, _ = sample
    kps = values(resources, "kube-prometheus-stack")
    prometheus = kps["prometheus"]["prometheusSpec"]
    assert prometheus["retention"] == "15d"
    assert prometheus["storageSpec"] == {"volumeClaimTemplate": {"spec": {
        "storageClassName": "gp3", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Gi"}}}}}
    for selector in ("rule", "serviceMonitor", "podMonitor", "probe"):
        assert prometheus[f"{selector}SelectorNilUsesHelmValues"] is False, selector
    assert prometheus["nodeSelector"] == SYSTEM_POOL
    assert kps["alertmanager"]["alertmanagerSpec"]["nodeSelector"] == SYSTEM_POOL
    assert kps["grafana"]["nodeSelector"] == SYSTEM_POOL
    assert kps["prometheusOperator"]["nodeSelector"] == SYSTEM_POOL
    assert kps["prometheusOperator"]["admissionWebhooks"]["patch"]["nodeSelector"] == SYSTEM_POOL
    assert kps["kube-state-metrics"]["nodeSelector"] == SYSTEM_POOL
    # The rules join on these Kubernetes labels (kube_pod_labels / kube_node_labels).
    assert kps["kube-state-metrics"]["metricLabelsAllowlist"] == kube_state_metrics_allowlist()
    # node-exporter needs the host: it runs in the privileged namespace, not in `monitoring`.
    assert kps["prometheus-node-exporter"] == {"namespaceOverride": SYSTEM_NAMESPACE}
    assert kps["fullnameOverride"] == "kube-prometheus-stack"


def test_config_changes_reach_the_values():
    """Other retention and volume sizes go through unchanged."""
    raw = platform_raw()
    raw["monitoring"].update({"retentionDays": 30, "volumeSizeGib": 250})
    resources, _ = build(raw)
    prometheus = values(resources, "kube-prometheus-stack")["prometheus"]["prometheusSpec"]
    assert prometheus["retention"] == "30d"
    assert prometheus["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"] == {"requests": {"storage": "250Gi"}}


def test_monitoring_namespace_is_baseline_not_privileged(sample):
    """The namespace whose pods may scrape every team is Pod Security `baseline` (restricted warned)."""
    resources, _ = sample
    namespace = resources[f"{NAME}-namespace"]["inputs"]
    labels = namespace["metadata"]["labels"]
    assert namespace["metadata"]["name"] == "monitoring"
    assert labels["pod-security.kubernetes.io/enforce"] == "baseline"
    assert labels["pod-security.kubernetes.io/warn"] == labels["pod-security.kubernetes.io/audit"] == "restricted"


def test_grafana_password_is_generated_and_never_plain(sample):
    """Grafana reads its admin password from our Secret; the password is a RandomPassword whose
    value appears nowhere in the plan (the Secret's data shows [secret]), nor in the chart values."""
    resources, _ = sample
    kps = values(resources, "kube-prometheus-stack")
    assert kps["grafana"]["admin"] == {"existingSecret": "grafana-admin", "userKey": "admin-user", "passwordKey": "admin-password"}
    assert "adminPassword" not in kps["grafana"]
    assert resources[f"{NAME}-grafana-password"]["inputs"] == {"length": 32, "special": False}
    secret = resources[f"{NAME}-grafana-admin"]["inputs"]
    assert secret["metadata"]["name"] == "grafana-admin" and secret["metadata"]["namespace"] == "monitoring"
    assert secret["stringData"] == "[secret]"
    assert kps["grafana"]["sidecar"]["dashboards"] == {
        "enabled": True, "label": "grafana_dashboard", "labelValue": "1", "searchNamespace": "monitoring"}


def test_alert_topic_is_encrypted_and_subscribed(sample):
    """One topic `<platform>-alerts`, encrypted with its own rotated key, one email subscription per
    configured address."""
    resources, _ = sample
    topic = resources[f"{NAME}-alerts"]["inputs"]
    key = resources[f"{NAME}-alerts-key"]["inputs"]
    assert topic["name"] == "ml-dev-alerts"
    assert topic["kmsMasterKeyId"].startswith("arn:aws:kms:us-west-2:111122223333:key/")
    assert key["enableKeyRotation"] is True
    subscriptions = [r["inputs"] for n, r in resources.items() if n.startswith(f"{NAME}-alerts-email-")]
    assert subscriptions == [{"topic": TOPIC_ARN, "protocol": "email", "endpoint": "ml-oncall@example.com"}]


def test_teams_with_alert_emails_get_their_own_topic(sample):
    """vision (alertEmails) gets topic `<platform>-alerts-vision`, encrypted with the alert topics' key,
    one email subscription per address; nlp (none) gets no topic; Alertmanager's config sends vision's
    alerts to receiver team-vision on that topic."""
    resources, seen = sample
    topics = {r["inputs"]["name"]: r["inputs"] for r in resources.values() if r["type"] == "aws:sns/topic:Topic"}
    assert sorted(topics) == ["ml-dev-alerts", "ml-dev-alerts-vision", "ml-dev-heartbeat"]
    assert topics["ml-dev-alerts-vision"]["kmsMasterKeyId"] == topics["ml-dev-alerts"]["kmsMasterKeyId"]
    assert topics["ml-dev-alerts-vision"]["kmsMasterKeyId"].startswith("arn:aws:kms:us-west-2:111122223333:key/")
    subscriptions = [r["inputs"] for n, r in resources.items() if n.startswith(f"{NAME}-team-alerts-vision-email-")]
    assert subscriptions == [{"topic": VISION_TOPIC_ARN, "protocol": "email", "endpoint": "vision-oncall@example.com"}]
    config = yaml.safe_load(seen["alertmanager"]["alertmanager.yaml"])
    receivers = {r["name"]: r for r in config["receivers"]}
    assert [c["topic_arn"] for c in receivers["team-vision"]["sns_configs"]] == [VISION_TOPIC_ARN]
    assert not [name for name in receivers if name.startswith("team-") and name != "team-vision"]


def test_team_topics_follow_the_config():
    """Every team with alertEmails gets a topic with one subscription per address; none without."""
    raw = platform_raw()
    raw["teams"]["nlp"]["alertEmails"] = ["nlp-a@example.com", "nlp-b@example.com"]
    del raw["teams"]["vision"]["alertEmails"]
    resources, _ = build(raw)
    topics = sorted(r["inputs"]["name"] for r in resources.values() if r["type"] == "aws:sns/topic:Topic")
    assert topics == ["ml-dev-alerts", "ml-dev-alerts-nlp", "ml-dev-heartbeat"]
    subscriptions = sorted((r["inputs"]["topic"], r["inputs"]["endpoint"]) for n, r in resources.items()
                     if n.startswith(f"{NAME}-team-alerts-")
                     and r["type"] == "aws:sns/topicSubscription:TopicSubscription")
    nlp = "arn:aws:sns:us-west-2:111122223333:ml-dev-alerts-nlp"
    assert subscriptions == [(nlp, "nlp-a@example.com"), (nlp, "nlp-b@example.com")]
    policy = json.loads(resources[f"{NAME}-am-irsa-publish"]["inputs"]["policy"])
    assert policy["Statement"][0]["Resource"] == [TOPIC_ARN, HEARTBEAT_ARN, nlp]


def test_alertmanager_may_only_publish_to_the_topic(sample):
    """Alertmanager's role: assumable only by monitoring/kube-prometheus-stack-alertmanager (the
    service account the chart creates, annotated with the role), allowed sns:Publish on the
    topics (alert, heartbeat, vision's own); its KMS use is granted by the key policy, through SNS only."""
    resources, seen = sample
    role = resources[f"{NAME}-am-irsa-role"]["inputs"]
    assert json.loads(role["assumeRolePolicy"]) == json.loads(
        trust_policy(PROVIDER_ARN, ISSUER, "monitoring", "kube-prometheus-stack-alertmanager"))
    policy = json.loads(resources[f"{NAME}-am-irsa-publish"]["inputs"]["policy"])
    assert policy["Statement"] == [{"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish",
                                    "Resource": [TOPIC_ARN, HEARTBEAT_ARN, VISION_TOPIC_ARN]}]
    account = values(resources, "kube-prometheus-stack")["alertmanager"]["serviceAccount"]
    assert account == {"create": True, "name": "kube-prometheus-stack-alertmanager",
                       "annotations": {"eks.amazonaws.com/role-arn": seen["role"]}}
    statements = {s["Sid"]: s for s in json.loads(resources[f"{NAME}-alerts-key"]["inputs"]["policy"])["Statement"]}
    assert set(statements) == {"EnableIamPolicies", "CloudWatchAlarms", "AutoScalingNotifications", "AlertmanagerViaSns"}
    alertmanager = statements["AlertmanagerViaSns"]
    assert alertmanager["Principal"] == {"AWS": seen["role"]}
    assert alertmanager["Action"] == ["kms:Decrypt", "kms:GenerateDataKey*"]
    assert alertmanager["Condition"] == {"StringEquals": {"kms:ViaService": "sns.us-west-2.amazonaws.com"}}
    assert statements["CloudWatchAlarms"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}


def test_alerts_key_waits_for_the_gpu_groups_whose_role_it_names(sample):
    """The key policy names AWSServiceRoleForAutoScaling, which exists only once an Auto Scaling group
    does: the key depends on every GPU node group; without GPU pools the statement is left out."""
    resources, _ = sample
    key = resources[f"{NAME}-alerts-key"]
    groups = [resources[f"group-{pool}"]["urn"] for pool in ("a10g", "l4-spot")]
    assert set(groups) <= set(key["dependsOn"])
    (statement,) = [s for s in json.loads(key["inputs"]["policy"])["Statement"] if s["Sid"] == "AutoScalingNotifications"]
    assert statement["Principal"] == {
        "AWS": "arn:aws:iam::111122223333:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"}
    raw = platform_raw()
    raw["gpuPools"] = []
    raw["teams"] = {}
    bare, _ = build(raw)
    sids = [s["Sid"] for s in json.loads(bare[f"{NAME}-alerts-key"]["inputs"]["policy"])["Statement"]]
    assert sids == ["EnableIamPolicies", "CloudWatchAlarms", "AlertmanagerViaSns"]


def test_heartbeat_alarm_pages_when_the_watchdog_stops(sample):
    """Dead man's switch: a second encrypted topic `<platform>-heartbeat` (no subscriber) gets the
    Watchdog every 5 minutes; fewer than 1 message in each of 3 five-minute periods, or no data,
    alarms to the alert topic."""
    resources, _ = sample
    topic = resources[f"{NAME}-heartbeat"]["inputs"]
    assert topic["name"] == "ml-dev-heartbeat"
    assert topic["kmsMasterKeyId"] == resources[f"{NAME}-alerts"]["inputs"]["kmsMasterKeyId"]
    alarm = resources[f"{NAME}-alerting-heartbeat"]["inputs"]
    assert (alarm["namespace"], alarm["metricName"], alarm["dimensions"], alarm["statistic"]) == (
        "AWS/SNS", "NumberOfMessagesPublished", {"TopicName": "ml-dev-heartbeat"}, "Sum")
    assert (alarm["period"], alarm["evaluationPeriods"], alarm["threshold"], alarm["comparisonOperator"]) == (
        300, 3, 1, "LessThanThreshold")
    assert alarm["treatMissingData"] == "breaching"
    assert alarm["alarmActions"] == alarm["okActions"] == [TOPIC_ARN]
    assert not [n for n, r in resources.items() if r["type"] == "aws:sns/topicSubscription:TopicSubscription"
                and r["inputs"]["topic"] == HEARTBEAT_ARN]


def test_alertmanager_reads_our_config_secret(sample):
    """The chart makes no config of its own: Alertmanager reads the Secret cloudml renders (its data
    hidden in the plan); without Slack nothing else is mounted."""
    resources, _ = sample
    spec = values(resources, "kube-prometheus-stack")["alertmanager"]["alertmanagerSpec"]
    assert spec == {"useExistingSecret": True, "configSecret": "alertmanager-cloudml", "nodeSelector": SYSTEM_POOL}
    secret = resources[f"{NAME}-alertmanager-config"]["inputs"]
    assert secret["metadata"]["name"] == "alertmanager-cloudml" and secret["stringData"] == "[secret]"


def test_slack_webhook_stays_a_secret():
    """With a Slack webhook: its own Secret (data [secret]) mounted into Alertmanager; the URL is in
    no other resource's inputs."""
    raw = platform_raw()
    raw["monitoring"]["slackWebhookUrl"] = SLACK_URL
    resources, _ = build(raw)
    slack = resources[f"{NAME}-alertmanager-slack"]["inputs"]
    assert slack["metadata"]["name"] == "alertmanager-slack" and slack["stringData"] == "[secret]"
    assert values(resources, "kube-prometheus-stack")["alertmanager"]["alertmanagerSpec"]["secrets"] == ["alertmanager-slack"]
    assert SLACK_URL not in json.dumps({n: r["inputs"] for n, r in resources.items()})


def test_dcgm_exporter_runs_on_gpu_nodes_only(sample):
    """GPU nodes only, through their taint; the chart's own ServiceMonitor is replaced by ours."""
    resources, _ = sample
    dcgm = values(resources, "dcgm-exporter")
    assert dcgm == {
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "service": {"enable": True},
        "serviceMonitor": {"enabled": False},
    }
    # Kubernetes pod mapping: the chart's DaemonSet sets DCGM_EXPORTER_KUBERNETES=true; nothing overrides it.
    assert "extraEnv" not in dcgm and "arguments" not in dcgm


def _selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def chart_service(release: str, namespace: str) -> dict:
    """The Service the dcgm-exporter chart (4.7.1) renders for a release, written out by hand from
    its deployment/templates/service.yaml and _helpers.tpl (default values: nameOverride and
    fullnameOverride empty, service.port 9400): name = the release name when it contains the chart
    name, else `<release>-dcgm-exporter`; labels = "dcgm-exporter.labels" plus the component;
    selector = "dcgm-exporter.selectorLabels". Never derived from cloudml's own selector."""
    name = release if "dcgm-exporter" in release else f"{release}-dcgm-exporter"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "labels": {
                "helm.sh/chart": "dcgm-exporter-4.7.1",
                "app.kubernetes.io/name": "dcgm-exporter",
                "app.kubernetes.io/instance": release,
                "app.kubernetes.io/version": "4.7.1",
                "app.kubernetes.io/managed-by": "Helm",
                "app.kubernetes.io/component": "dcgm-exporter"}},
            "spec": {"type": "ClusterIP", "ports": [{"name": "metrics", "port": 9400, "targetPort": 9400, "protocol": "TCP"}],
                     "selector": {"app.kubernetes.io/name": "dcgm-exporter", "app.kubernetes.io/instance": release}}}


def test_dcgm_service_monitor_selects_the_charts_service(sample):
    """Our ServiceMonitor selects the Service of the release we install (labels, namespace, port
    name), keeps the workload's namespace/pod labels (honorLabels) and scrapes every 15 s; it would
    not select the Service of a release named differently."""
    assert versions.DCGM_EXPORTER.version == "4.7.1", "chart_service() is written from chart 4.7.1: re-read its templates"
    resources, _ = sample
    service = chart_service(resources[f"{NAME}-dcgm-exporter"]["inputs"]["name"], resources[f"{NAME}-dcgm-exporter"]["inputs"]["namespace"])
    assert schema_errors(service) == []
    (monitor,) = [o for o in resources[f"{NAME}-scrape"]["inputs"]["objs"] if o["kind"] == "ServiceMonitor"]
    assert _selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert service["metadata"]["namespace"] in monitor["spec"]["namespaceSelector"]["matchNames"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in [p["name"] for p in service["spec"]["ports"]]
    assert endpoint["honorLabels"] is True and endpoint["interval"] == "15s"
    assert not _selects(monitor["spec"]["selector"], chart_service("gpu-metrics", SYSTEM_NAMESPACE)["metadata"]["labels"])


def test_model_service_pod_monitor(sample):
    """TF Serving's metrics of model-service pods in the team namespaces, on the REST port, with the
    team and workload as labels."""
    resources, _ = sample
    (monitor,) = [o for o in resources[f"{NAME}-scrape"]["inputs"]["objs"] if o["kind"] == "PodMonitor"]
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-nlp", "team-vision"]}
    assert monitor["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/component": "modelService"}}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/monitoring/prometheus/metrics")
    assert [(r["sourceLabels"], r["targetLabel"]) for r in endpoint["relabelings"]] == [
        (["__meta_kubernetes_pod_label_cloudml_io_team"], "team"),
        (["__meta_kubernetes_pod_label_cloudml_io_workload"], "workload")]


def test_rules_and_dashboards_go_in_after_the_chart(sample):
    """components.monitoring's PrometheusRules and dashboard ConfigMaps, in one ConfigGroup that
    waits for kube-prometheus-stack (its CRDs and admission webhook); the dashboards carry the
    label the Grafana sidecar is configured with."""
    resources, _ = sample
    spec = load_platform(platform_raw())
    group = resources[f"{NAME}-rules"]
    assert group["inputs"]["objs"] == prometheus_rules(spec) + dashboard_config_maps(spec)
    assert resources[f"{NAME}-kube-prometheus-stack"]["urn"] in group["dependsOn"]
    kinds = {o["kind"] for o in group["inputs"]["objs"]}
    assert kinds == {"PrometheusRule", "ConfigMap"}
    sidecar = values(resources, "kube-prometheus-stack")["grafana"]["sidecar"]["dashboards"]
    for config_map in dashboard_config_maps(spec):
        assert config_map["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"]
        assert config_map["metadata"]["namespace"] == sidecar["searchNamespace"]


def test_every_kubernetes_object_is_schema_valid(sample):
    """The scrape objects, rules and dashboards against the Prometheus operator CRDs and Kubernetes
    1.31, the namespace and Secrets against Kubernetes 1.31."""
    resources, _ = sample
    objects = list(resources[f"{NAME}-scrape"]["inputs"]["objs"]) + list(resources[f"{NAME}-rules"]["inputs"]["objs"])
    for role in ("namespace", "grafana-admin", "alertmanager-config"):
        obj = copy.deepcopy(resources[f"{NAME}-{role}"]["inputs"])
        obj.pop("stringData", None)  # redacted in the record; its schema is a string map
        objects.append(obj)
    assert [(o["kind"], schema_errors(o)) for o in objects] == [(o["kind"], []) for o in objects]
    assert scrape_objects(load_platform(platform_raw())) == resources[f"{NAME}-scrape"]["inputs"]["objs"]


def test_cloudwatch_alarms_go_to_the_topic(sample):
    """Control-plane 5xx and long-unschedulable pods (AWS/EKS, this cluster) alarm to the topic;
    launch errors of every GPU group's ASG are notified to it."""
    resources, seen = sample
    expected = {
        "apiserver-5xx": ("apiserver_request_total_5XX", 300, 3, 50, "GreaterThanThreshold"),
        "unschedulable-pods": ("scheduler_pending_pods_UNSCHEDULABLE", 60, 60, 1, "GreaterThanOrEqualToThreshold"),
    }
    for role, (metric, period, periods, threshold, comparison) in expected.items():
        alarm = resources[f"{NAME}-{role}"]["inputs"]
        assert (alarm["namespace"], alarm["metricName"], alarm["dimensions"]) == ("AWS/EKS", metric, {"ClusterName": "ml-dev"})
        assert (alarm["period"], alarm["evaluationPeriods"], alarm["threshold"], alarm["comparisonOperator"]) == (
            period, periods, threshold, comparison)
        assert alarm["alarmActions"] == alarm["okActions"] == [TOPIC_ARN]
        assert alarm["name"] == f"ml-dev-{role}" and "Runbook" in alarm["alarmDescription"]
    notification = resources[f"{NAME}-gpu-launch-errors"]["inputs"]
    assert notification == {"groupNames": [seen["asgs"]["a10g"], seen["asgs"]["l4-spot"]],
                            "notifications": ["autoscaling:EC2_INSTANCE_LAUNCH_ERROR"], "topicArn": TOPIC_ARN}


def test_no_gpu_pools_no_launch_notifications():
    """Without GPU pools there is no ASG to watch: no notification, runbook or pool alarm."""
    raw = platform_raw()
    raw["gpuPools"] = []
    raw["teams"] = {}
    resources, _ = build(raw)
    assert f"{NAME}-gpu-launch-errors" not in resources
    assert not [n for n in resources if "asg-metrics" in n or n.endswith("-at-max")]


def test_gpu_pool_at_max_alarm_per_pool(sample):
    """Each GPU pool's ASG: desired capacity (AWS/AutoScaling GroupDesiredCapacity, its ASG by name)
    at least the pool's max (a10g 4, l4-spot 8) as the minimum of each of 6 five-minute periods
    alarms to the alert topic; no data stays INSUFFICIENT_DATA (collection off), never OK."""
    resources, seen = sample
    for pool, max_size in (("a10g", 4), ("l4-spot", 8)):
        alarm = resources[f"{NAME}-gpu-{pool}-at-max"]
        inputs = alarm["inputs"]
        assert (inputs["namespace"], inputs["metricName"], inputs["dimensions"], inputs["statistic"]) == (
            "AWS/AutoScaling", "GroupDesiredCapacity", {"AutoScalingGroupName": seen["asgs"][pool]}, "Minimum")
        assert (inputs["period"], inputs["evaluationPeriods"], inputs["threshold"], inputs["comparisonOperator"]) == (
            300, 6, max_size, "GreaterThanOrEqualToThreshold")
        assert inputs["treatMissingData"] == "missing"
        assert inputs["alarmActions"] == inputs["okActions"] == [TOPIC_ARN]
        assert inputs["name"] == f"ml-dev-gpu-{pool}-at-max" and "Runbook" in inputs["alarmDescription"]
        # The alarm's metric exists only once the runbook has enabled it on that ASG.
        assert resources[f"{NAME}-asg-metrics-{pool}"]["urn"] in alarm["dependsOn"]


def test_group_metrics_are_enabled_on_each_gpu_asg(sample):
    """EKS leaves group metrics off: a one-step Automation runbook (autoscaling EnableMetricsCollection,
    1Minute, the metrics the alarm reads) runs through a State Manager association per pool, targeted
    at that pool's ASG name, as a role only SSM of this account may assume and that may enable
    metrics on exactly the GPU groups; `pulumi up` waits for the run to succeed."""
    resources, seen = sample
    document = resources[f"{NAME}-asg-metrics"]["inputs"]
    assert (document["name"], document["documentType"], document["documentFormat"]) == (
        "ml-dev-enable-asg-metrics", "Automation", "JSON")
    (step,) = json.loads(document["content"])["mainSteps"]
    assert step["action"] == "aws:executeAwsApi"
    assert step["inputs"] == {"Service": "autoscaling", "Api": "EnableMetricsCollection",
                              "AutoScalingGroupName": "{{ AutoScalingGroupName }}", "Granularity": "1Minute",
                              "Metrics": ["GroupDesiredCapacity", "GroupInServiceInstances", "GroupMaxSize"]}
    role = resources[f"{NAME}-asg-metrics-role"]
    (trust,) = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    assert trust["Principal"] == {"Service": "ssm.amazonaws.com"} and trust["Action"] == "sts:AssumeRole"
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "111122223333"}}
    policy = json.loads(resources[f"{NAME}-asg-metrics-policy"]["inputs"]["policy"])
    assert policy["Statement"] == [{"Sid": "EnableGroupMetrics", "Effect": "Allow", "Action": "autoscaling:EnableMetricsCollection",
                                    "Resource": [f"arn:aws:autoscaling:us-west-2:111122223333:autoScalingGroup:*:autoScalingGroupName/{seen['asgs'][p]}"
                                                 for p in ("a10g", "l4-spot")]}]
    for pool in ("a10g", "l4-spot"):
        association = resources[f"{NAME}-asg-metrics-{pool}"]
        inputs = association["inputs"]
        assert inputs["name"] == "ml-dev-enable-asg-metrics" and inputs["associationName"] == f"ml-dev-asg-metrics-{pool}"
        assert inputs["automationTargetParameterName"] == "AutoScalingGroupName"
        assert inputs["targets"] == [{"key": "ParameterValues", "values": [seen["asgs"][pool]]}]
        assert inputs["parameters"] == {"AutomationAssumeRole": seen["asg_metrics_role"]}
        assert inputs["waitForSuccessTimeoutSeconds"] == 600
        assert inputs["scheduleExpression"] == "rate(1 day)"  # a failed first run is retried
        assert resources[f"{NAME}-asg-metrics-policy"]["urn"] in association["dependsOn"]


def test_fixed_size_pool_has_no_at_max_alarm():
    """A pool with min = max is always at its max: its metrics are still enabled, but no alarm (nor
    the NodePoolAtMaxSize Prometheus alert) fires for it."""
    raw = platform_raw()
    raw["gpuPools"][0].update({"min": 2, "max": 2})
    resources, _ = build(raw)
    assert f"{NAME}-gpu-{raw['gpuPools'][0]['name']}-at-max" not in resources
    assert f"{NAME}-asg-metrics-{raw['gpuPools'][0]['name']}" in resources
    assert f"{NAME}-gpu-{raw['gpuPools'][1]['name']}-at-max" in resources
    rules = [r for g in resources[f"{NAME}-rules"]["inputs"]["objs"] if g["kind"] == "PrometheusRule"
             for group in g["spec"]["groups"] for r in group["rules"]]
    assert [r["labels"]["pool"] for r in rules if r.get("alert") == "NodePoolAtMaxSize"] == [raw["gpuPools"][1]["name"]]


def test_amtool_accepts_the_config_in_the_secret(sample, tmp_path):
    """The exact alertmanager.yaml the Secret holds (topic ARNs from the resources, vision's own
    topic), with and without Slack, passes the real `amtool check-config`, and routes as promised."""
    raw = platform_raw()
    raw["monitoring"]["slackWebhookUrl"] = SLACK_URL
    for _, seen in (sample, build(raw)):
        text = seen["alertmanager"]["alertmanager.yaml"]
        path = tmp_path / "alertmanager.yaml"
        path.write_text(text, encoding="utf-8")
        assert "SUCCESS" in run_amtool("check-config", str(path))
        slack = "slack_configs" in text
        routed = run_amtool("config", "routes", "test", f"--config.file={path}", "team=vision", "severity=critical").strip()
        assert routed == ("team-vision,critical" if slack else "team-vision,sns")
    assert SLACK_URL not in text


def test_platform_exports_prometheus_url_and_no_monitoring_warning(sample_plans):
    """The sample platform exports the in-cluster Prometheus URL team stacks' ScaledObjects use,
    and the plan no longer warns that monitoring is not deployed."""
    plan = sample_plans["platform-dev"]
    assert plan.outputs["prometheusUrl"] == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    assert [w for w in plan.warnings if "monitoring" in w] == []
    assert not_yet_deployed(load_platform(platform_raw())) == []


def test_monitoring_thresholds_have_defaults_and_bounds():
    """The alert thresholds the rules use: defaults, durations in any unit, and bounded values."""
    spec = load_platform(platform_raw())
    assert (spec.monitoring.gpu_temperature_celsius, spec.monitoring.gpu_idle_utilization_percent,
            spec.monitoring.gpu_idle_window) == (85, 5, 7200)
    raw = platform_raw()
    raw["monitoring"].update({"gpuIdleWindow": "90m", "gpuTemperatureCelsius": 80})
    assert load_platform(raw).monitoring.gpu_idle_window == 5400
    raw["monitoring"].update({"gpuIdleWindow": "5m", "gpuTemperatureCelsius": 200})
    with pytest.raises(ConfigError) as error:
        load_platform(raw)
    text = str(error.value)
    assert "cloudml:platform.monitoring.gpuIdleWindow" in text and "cloudml:platform.monitoring.gpuTemperatureCelsius" in text
