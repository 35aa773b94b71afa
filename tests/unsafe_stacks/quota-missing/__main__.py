"""Deliberately unsafe: a team namespace with no ResourceQuota (rule team-namespace-gpu-quota): the
team could take every GPU of the cluster.

The namespace itself enforces Pod Security `restricted`, as cloudml's tenancy does."""

import pulumi_kubernetes as k8s

k8s.core.v1.Namespace(
    "team-rogue",
    metadata={
        "name": "team-rogue",
        "labels": {
            "cloudml.io/team": "rogue",
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "latest",
        },
    },
)
