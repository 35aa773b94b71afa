"""Monitoring content the platform installs into kube-prometheus-stack: the PrometheusRule objects
(recording rules and GPU/workload alerts, `rules.py`) and the Grafana dashboards as ConfigMaps the
Grafana sidecar loads (`dashboards.py`), both rendered from templates/monitoring/."""

from components.monitoring.dashboards import dashboard_config_maps
from components.monitoring.rules import kube_state_metrics_allowlist, prometheus_rules

__all__ = ["dashboard_config_maps", "kube_state_metrics_allowlist", "prometheus_rules"]
