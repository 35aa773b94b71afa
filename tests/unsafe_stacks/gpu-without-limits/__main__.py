"""Deliberately unsafe: a team Job that lands on a GPU node (selects the pool, tolerates the GPU
taint) without asking for `nvidia.com/gpu` (rule gpu-resources): the scheduler does not count the
GPUs it may use, so the team's GPU quota does not hold it.

Everything else meets Pod Security `restricted` and the other guardrails."""

import pulumi_kubernetes as k8s

k8s.batch.v1.Job(
    "sneaky-train",
    metadata={"name": "sneaky-train", "namespace": "team-vision", "labels": {"cloudml.io/team": "vision"}},
    spec={
        "backoff_limit": 0,
        "template": {
            "spec": {
                "restart_policy": "Never",
                "node_selector": {"cloudml.io/gpu-type": "a10g"},
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "security_context": {"run_as_non_root": True, "run_as_user": 1000, "seccomp_profile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "trainer",
                    "image": "docker.io/tensorflow/tensorflow:2.20.0-gpu",
                    "command": ["python", "-c", "import tensorflow"],
                    # The unsafe part: no nvidia.com/gpu in limits (nor requests).
                    "resources": {"requests": {"cpu": "4", "memory": "16Gi"}, "limits": {"memory": "16Gi"}},
                    "security_context": {"allow_privilege_escalation": False, "capabilities": {"drop": ["ALL"]}},
                }],
            },
        },
    },
)
