"""Every Helm chart the platform installs, pinned in one place: chart, repository, version.

A chart version pins everything the chart deploys (its default image tags follow the chart's app
version), so an upgrade is a one-line, reviewable change here. Where the right release depends on
the cluster's Kubernetes minor version (the Cluster Autoscaler compiles in the scheduler of one
Kubernetes minor; KEDA is tested on a window of three), the pin is a small table keyed by
`PlatformSpec.kubernetes_version`; tests check it covers every version the contract allows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HelmChart:
    """One pinned chart. `repo` is the Helm repository URL; None for an OCI chart, whose `chart` is
    then the full `oci://` reference (Helm takes OCI charts that way, not through a repository)."""

    chart: str
    version: str
    repo: str | None
    app_version: str  # what the chart deploys at this version (documentation and tests only)


# NVIDIA k8s-device-plugin (https://github.com/NVIDIA/k8s-device-plugin), deploys the plugin v0.18.2.
DEVICE_PLUGIN = HelmChart("nvidia-device-plugin", "0.18.2", "https://nvidia.github.io/k8s-device-plugin", "0.18.2")

# metrics-server (kubernetes-sigs/metrics-server): chart 3.13.0 deploys metrics-server v0.8.0.
METRICS_SERVER = HelmChart("metrics-server", "3.13.0", "https://kubernetes-sigs.github.io/metrics-server/", "0.8.0")

# JobSet (kubernetes-sigs/jobset) is published only as an OCI chart; its chart version is the
# release without the `v` (release v0.11.1 -> chart 0.11.1, controller image v0.11.1).
JOBSET = HelmChart("oci://registry.k8s.io/jobset/charts/jobset", "0.11.1", None, "0.11.1")

# AWS Load Balancer Controller (eks-charts): chart 1.12.0 deploys controller v2.12.0. Its IAM policy
# is version-specific: components/platform/data/aws-load-balancer-controller-iam-policy-v2.12.0.json.
LB_CONTROLLER = HelmChart("aws-load-balancer-controller", "1.12.0", "https://aws.github.io/eks-charts", "v2.12.0")
LB_CONTROLLER_POLICY_FILE = "aws-load-balancer-controller-iam-policy-v2.12.0.json"

# kube-prometheus-stack (prometheus-community): chart 78.2.1 deploys prometheus-operator v0.86.0 with
# Prometheus, Alertmanager, Grafana, kube-state-metrics and node-exporter at the chart's own tags.
KUBE_PROMETHEUS_STACK = HelmChart("kube-prometheus-stack", "78.2.1", "https://prometheus-community.github.io/helm-charts",
                                  "v0.86.0")

# NVIDIA dcgm-exporter (chart version = exporter version): 4.7.1 deploys exporter 4.7.1, whose GPU series
# still carry the `Hostname` label (release 4.8 renames it `hostname`; the rules match both).
DCGM_EXPORTER = HelmChart("dcgm-exporter", "4.7.1", "https://nvidia.github.io/dcgm-exporter/helm-charts", "4.7.1")

_AUTOSCALER_REPO = "https://kubernetes.github.io/autoscaler"
# Cluster Autoscaler: the app's minor must equal the cluster's (it simulates that scheduler). The
# kubernetes/autoscaler README maps 1.29 -> chart 9.35.0+, 1.30 -> 9.37.0+, 1.31 -> 9.38.0+,
# 1.32 -> 9.45.0+, 1.33 -> 9.47.0+; each pin below deploys that minor's app version.
CLUSTER_AUTOSCALER: dict[str, HelmChart] = {
    "1.30": HelmChart("cluster-autoscaler", "9.37.0", _AUTOSCALER_REPO, "1.30.0"),
    "1.31": HelmChart("cluster-autoscaler", "9.38.0", _AUTOSCALER_REPO, "1.31.0"),
    "1.32": HelmChart("cluster-autoscaler", "9.46.6", _AUTOSCALER_REPO, "1.32.0"),
    "1.33": HelmChart("cluster-autoscaler", "9.50.1", _AUTOSCALER_REPO, "1.33.0"),
}

_KEDA_REPO = "https://kedacore.github.io/charts"
# KEDA (chart version = app version), the newest release tested on each minor (keda.sh "Cluster"
# docs: 2.16 -> 1.29-1.31, 2.17 -> 1.30-1.32, 2.18 -> 1.31-1.33). All serve keda.sh/v1alpha1.
KEDA: dict[str, HelmChart] = {
    "1.30": HelmChart("keda", "2.17.2", _KEDA_REPO, "2.17.2"),
    "1.31": HelmChart("keda", "2.18.1", _KEDA_REPO, "2.18.1"),
    "1.32": HelmChart("keda", "2.18.1", _KEDA_REPO, "2.18.1"),
    "1.33": HelmChart("keda", "2.18.1", _KEDA_REPO, "2.18.1"),
}


def for_kubernetes(table: dict[str, HelmChart], kubernetes_version: str) -> HelmChart:
    """The pin of `table` for a Kubernetes minor ("1.31"); a clear error for a minor not pinned."""
    try:
        return table[kubernetes_version]
    except KeyError:
        raise ValueError(
            f"no chart pinned for Kubernetes {kubernetes_version} (pinned: {', '.join(sorted(table))}); "
            "add it to components/platform/versions.py"
        ) from None
