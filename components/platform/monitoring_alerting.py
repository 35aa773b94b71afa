"""Alert routing of the platform: Alertmanager's configuration, the policies of the alert topic's
KMS key and of Alertmanager's IRSA role, and the CloudWatch alarms for what Prometheus cannot see
(with the Automation runbook that turns on the GPU groups' Auto Scaling group metrics they read).

All pure functions of plain values (tests pin them; `amtool check-config` checks the rendered
configuration). `components/platform/monitoring.py` wires them into resources.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import yaml

from components.render import render_template

# The Secret holding Slack's webhook, mounted by the Alertmanager resource (alertmanagerSpec.secrets)
# at /etc/alertmanager/secrets/<secret>/<key> (prometheus-operator's mount point for `secrets`).
SLACK_SECRET = "alertmanager-slack"
SLACK_SECRET_KEY = "webhook-url"
SLACK_URL_FILE = f"/etc/alertmanager/secrets/{SLACK_SECRET}/{SLACK_SECRET_KEY}"
# SNS rejects subjects over 100 characters: keep the rendered subject within 95.
SUBJECT = (
    '{{ printf "[%s] %s (team %s) %s" (.Status | toUpper) .CommonLabels.alertname '
    '(or .CommonLabels.team "platform") "PLATFORM" | reReplaceAll "^(.{95}).+$" "$1" }}'
)
MESSAGE = (
    "{{ range .Alerts }}[{{ .Status | toUpper }}] {{ .Labels.alertname }}"
    ' severity={{ .Labels.severity }} team={{ or .Labels.team "platform" }}\n'
    "{{ .Annotations.summary }}\n{{ .Annotations.description }}\n"
    "Runbook: {{ or .Annotations.runbook_url .Annotations.runbook }}\n\n{{ end }}"
)
SLACK_TITLE = '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} (team {{ or .CommonLabels.team "platform" }})'

# Actions a publisher to an SSE-KMS topic needs on its key (SNS developer guide, "Encryption at rest").
SNS_PUBLISHER_KMS_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey*"]
# EC2 Auto Scaling publishes notifications through its service-linked role.
AUTOSCALING_ROLE_PATH = "role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling"


# The chart's Watchdog alert always fires: Alertmanager re-sends it to the heartbeat topic every
# HEARTBEAT_REPEAT, and a CloudWatch alarm (HEARTBEAT_ALARM) pages the alert topic when the heartbeat
# topic got nothing for HEARTBEAT_SILENCE_PERIODS * HEARTBEAT_PERIOD: a dead man's switch for the whole
# Prometheus -> Alertmanager -> SNS chain (Prometheus down, Alertmanager down, IRSA broken).
HEARTBEAT_REPEAT = "5m"
HEARTBEAT_PERIOD = 300
HEARTBEAT_SILENCE_PERIODS = 3


def alertmanager_config(platform: str, region: str, topic_arn: str, teams: list[str],
                        slack: bool, heartbeat_topic_arn: str, team_topics: dict[str, str] | None = None) -> str:
    """Alertmanager's alertmanager.yaml: SNS for critical and warning, Slack too for critical (when
    `slack`), one route per team, nothing for info; the Watchdog heartbeat to its own topic.
    `team_topics` (team -> topic ARN): those teams' critical and warning alerts also go to receiver
    `team-<team>` on their own topic, and still to the platform's receivers."""
    team_topics = team_topics or {}
    unknown = sorted(set(team_topics) - set(teams))
    if unknown:
        raise ValueError(f"team topics for teams without a route: {unknown}")
    objects = render_template(
        "platform/alertmanager.yaml.j2",
        teams=sorted(teams),
        team_topics=dict(sorted(team_topics.items())),
        topic_arn=topic_arn,
        heartbeat_topic_arn=heartbeat_topic_arn,
        heartbeat_repeat=HEARTBEAT_REPEAT,
        region=region,
        subject=SUBJECT.replace("PLATFORM", platform),
        message=MESSAGE,
        slack_title=SLACK_TITLE,
        slack_url_file=SLACK_URL_FILE if slack else None,
        critical_receiver="critical" if slack else "sns",
    )
    (config,) = objects
    # Through JSON first: the receivers share one sns_configs list, which PyYAML would write as an
    # anchor; the Secret holds plain YAML in the template's key order.
    return yaml.safe_dump(json.loads(json.dumps(config)), sort_keys=False)


def publish_policy(topic_arn: str, heartbeat_topic_arn: str, team_topic_arns: list[str] | None = None) -> str:
    """Alertmanager's IRSA policy: publish to the alert and heartbeat topics and the teams' own alert
    topics (in the given order), nothing else (the topics' key lets the role encrypt through SNS by
    its key policy, `alerts_key_policy`)."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Sid": "PublishAlerts", "Effect": "Allow", "Action": "sns:Publish",
                       "Resource": [topic_arn, heartbeat_topic_arn, *(team_topic_arns or [])]}],
    }, sort_keys=True)


def alerts_key_policy(account_id: str, partition: str, region: str, dns_suffix: str, publisher_role_arn: str,
                      autoscaling: bool) -> str:
    """The alert topics' KMS key policy. An AWS managed key (alias/aws/sns) cannot be used: its policy
    cannot admit CloudWatch or EC2 Auto Scaling, whose notifications to an encrypted topic would
    then be dropped. So: the account's IAM policies decide (the default statement), CloudWatch
    alarms of this account may encrypt, Auto Scaling's service-linked role too when `autoscaling`
    (KMS rejects a policy naming a principal that does not exist, and that role exists only once an
    Auto Scaling group has been made: the key then waits for the GPU node groups), and
    Alertmanager's role may encrypt through SNS only."""
    via_sns = {"kms:ViaService": f"sns.{region}.{dns_suffix}"}
    statements = [
        {"Sid": "EnableIamPolicies", "Effect": "Allow", "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
         "Action": "kms:*", "Resource": "*"},
        {"Sid": "CloudWatchAlarms", "Effect": "Allow", "Principal": {"Service": f"cloudwatch.{dns_suffix}"},
         "Action": SNS_PUBLISHER_KMS_ACTIONS, "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
    ]
    if autoscaling:
        statements.append(
            {"Sid": "AutoScalingNotifications", "Effect": "Allow",
             "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:{AUTOSCALING_ROLE_PATH}"},
             "Action": SNS_PUBLISHER_KMS_ACTIONS, "Resource": "*", "Condition": {"StringEquals": via_sns}})
    statements.append(
        {"Sid": "AlertmanagerViaSns", "Effect": "Allow", "Principal": {"AWS": publisher_role_arn},
         "Action": SNS_PUBLISHER_KMS_ACTIONS, "Resource": "*", "Condition": {"StringEquals": via_sns}})
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


# --- CloudWatch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Alarm:
    """One CloudWatch alarm: its metric, statistic and threshold (namespace and dimensions are the
    caller's: AWS/EKS ClusterName, AWS/SNS TopicName, AWS/AutoScaling AutoScalingGroupName)."""

    role: str  # resource-name suffix
    metric: str
    statistic: str
    period: int
    evaluation_periods: int
    threshold: float
    comparison: str
    description: str


# EKS vends these control-plane metrics for free (AWS/EKS, one-minute, clusters 1.28+; EKS user
# guide "Monitor cluster data with Amazon CloudWatch").
API_SERVER_5XX_PER_5M = 50
UNSCHEDULABLE_MINUTES = 60
EKS_ALARMS = (
    Alarm("apiserver-5xx", "apiserver_request_total_5XX", "Sum", 300, 3, API_SERVER_5XX_PER_5M,
          "GreaterThanThreshold",
          f"EKS API server answered more than {API_SERVER_5XX_PER_5M} requests with 5xx in each of 3 "
          "consecutive 5-minute periods: controllers, autoscaling and deployments are failing. Runbook: "
          "check the AWS Health dashboard and the cluster's control-plane logs (/aws/eks/<cluster>/cluster)."),
    # Stuck pending pods: every GPU pool that could take them is at its max size, or EC2 has no capacity
    # for it (a Prometheus alert cannot tell the second case, and dies with the cluster's nodes).
    Alarm("unschedulable-pods", "scheduler_pending_pods_UNSCHEDULABLE", "Sum", 60, UNSCHEDULABLE_MINUTES, 1,
          "GreaterThanOrEqualToThreshold",
          f"Pods have been unschedulable for {UNSCHEDULABLE_MINUTES} minutes: a node pool is at its max size or "
          "EC2 has no capacity for it. Runbook: `kubectl get pods -A --field-selector=status.phase=Pending`, "
          "the Cluster Autoscaler's events, and raise the pool's max or add instance types."),
)
# EC2 Auto Scaling notifications of the GPU groups: a launch that failed (no capacity, spot
# interruption storm, quota) is the earliest sign that a pool cannot grow.
ASG_NOTIFICATIONS = ["autoscaling:EC2_INSTANCE_LAUNCH_ERROR"]
# The heartbeat alarm (AWS/SNS metrics of the heartbeat topic, dimension TopicName): no message
# published for 15 minutes, or no data at all, means the alerting chain is down.
HEARTBEAT_ALARM = Alarm(
    "alerting-heartbeat", "NumberOfMessagesPublished", "Sum", HEARTBEAT_PERIOD, HEARTBEAT_SILENCE_PERIODS, 1,
    "LessThanThreshold",
    f"Alertmanager has not sent the Watchdog heartbeat for {HEARTBEAT_PERIOD * HEARTBEAT_SILENCE_PERIODS // 60} "
    "minutes: Prometheus or Alertmanager is down, or Alertmanager cannot publish to SNS, and no alert reaches "
    "anyone. Runbook: kubectl -n monitoring get pods; read the Alertmanager logs (sns errors mean its IRSA "
    "role or the key policy); check the Prometheus UI's Alerts page for Watchdog.")


# --- GPU node groups stuck at their max size -----------------------------------------------------
# EC2 Auto Scaling publishes group metrics (AWS/AutoScaling, dimension AutoScalingGroupName, free of
# charge) only for groups with metrics collection enabled. EKS creates a managed node group's ASG
# without it, and neither the EKS API nor pulumi-aws's NodeGroup can enable it
# (aws/containers-roadmap#762); `aws.autoscaling.Group` could only adopt the ASG EKS owns, and two
# owners of one group fight. So a one-step Systems Manager Automation runbook calls
# autoscaling:EnableMetricsCollection on each GPU group's ASG, run by a State Manager association
# (target: the ASG's name) when it is created and again whenever EKS replaces the group (new ASG
# name). Its role may enable metrics on those groups only.
GROUP_METRICS = ["GroupDesiredCapacity", "GroupInServiceInstances", "GroupMaxSize"]
GROUP_METRICS_GRANULARITY = "1Minute"  # the only granularity EC2 Auto Scaling accepts
ASG_METRICS_PARAMETER = "AutoScalingGroupName"
# `pulumi up` waits this long for the association's first run to succeed, and fails if it does not.
ASG_METRICS_WAIT_SECONDS = 600
# Run again daily: a first run that failed (a role IAM has not propagated yet) gets another chance,
# and metrics switched off by hand come back. EnableMetricsCollection is idempotent.
ASG_METRICS_SCHEDULE = "rate(1 day)"
# A pool whose desired size has been at its max for 30 minutes (as the NodePoolAtMaxSize
# Prometheus alert): pending GPU pods cannot get a node. Minimum over each 5-minute period, so one
# 5 minutes below max resets the count.
POOL_AT_MAX_PERIOD = 300
POOL_AT_MAX_PERIODS = 6


def enable_group_metrics_document() -> str:
    """The Automation runbook (schemaVersion 0.3, JSON): enable the group metrics the alarms read
    on the Auto Scaling group named by its parameter, under the role of its other parameter."""
    return json.dumps({
        "schemaVersion": "0.3",
        "description": "Enable Auto Scaling group metrics collection on an EKS managed node group's Auto Scaling group "
                       "(cloudml: EKS cannot enable it itself).",
        "assumeRole": "{{ AutomationAssumeRole }}",
        "parameters": {
            ASG_METRICS_PARAMETER: {"type": "String", "description": "The Auto Scaling group's name."},
            "AutomationAssumeRole": {"type": "String", "description": "The role the runbook runs as."},
        },
        "mainSteps": [{
            "name": "EnableGroupMetrics",
            "action": "aws:executeAwsApi",
            "inputs": {
                "Service": "autoscaling",
                "Api": "EnableMetricsCollection",
                "AutoScalingGroupName": "{{ %s }}" % ASG_METRICS_PARAMETER,
                "Granularity": GROUP_METRICS_GRANULARITY,
                "Metrics": GROUP_METRICS,
            },
        }],
    }, indent=2, sort_keys=True)


def automation_trust_policy(account_id: str, dns_suffix: str) -> str:
    """Who may assume the runbook's role: Systems Manager, on behalf of this account only."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": f"ssm.{dns_suffix}"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}}]}, sort_keys=True)


def group_metrics_policy(partition: str, region: str, account_id: str, asg_names: list[str]) -> str:
    """The runbook role's policy: EnableMetricsCollection on exactly these Auto Scaling groups."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "EnableGroupMetrics", "Effect": "Allow", "Action": "autoscaling:EnableMetricsCollection",
        "Resource": [f"arn:{partition}:autoscaling:{region}:{account_id}:autoScalingGroup:*:autoScalingGroupName/{name}"
                     for name in asg_names]}]}, sort_keys=True)


def pool_at_max_alarm(pool: str, max_size: int) -> Alarm:
    """The alarm on one GPU pool's Auto Scaling group (AWS/AutoScaling GroupDesiredCapacity)."""
    minutes = POOL_AT_MAX_PERIOD * POOL_AT_MAX_PERIODS // 60
    return Alarm(
        f"gpu-{pool}-at-max", "GroupDesiredCapacity", "Minimum", POOL_AT_MAX_PERIOD, POOL_AT_MAX_PERIODS, max_size,
        "GreaterThanOrEqualToThreshold",
        f"GPU pool {pool} has wanted its maximum of {max_size} nodes for {minutes} minutes: the autoscaler cannot add "
        "a node for pending GPU pods. Runbook: kubectl get pods -A --field-selector=status.phase=Pending; raise "
        f"gpuPools[{pool}].max in the platform stack, or move work to another pool. No data means the group's "
        "metrics collection is off: see the State Manager association <platform>-asg-metrics-<pool>.")
