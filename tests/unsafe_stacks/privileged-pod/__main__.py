"""Deliberately unsafe: a team Job whose container is privileged (rule pod-security-restricted).

Everything else meets Pod Security `restricted` and the other guardrails, so that rule is the only
mandatory finding."""

import pulumi_kubernetes as k8s

SECURITY = {
    "allow_privilege_escalation": False,
    "capabilities": {"drop": ["ALL"]},
    "privileged": True,  # the unsafe part: full access to the node
}

k8s.batch.v1.Job(
    "debug-node",
    metadata={"name": "debug-node", "namespace": "team-vision", "labels": {"cloudml.io/team": "vision"}},
    spec={
        "backoff_limit": 0,
        "template": {
            "spec": {
                "restart_policy": "Never",
                "security_context": {"run_as_non_root": True, "run_as_user": 1000, "seccomp_profile": {"type": "RuntimeDefault"}},
                "containers": [{
                    "name": "debug",
                    "image": "public.ecr.aws/docker/library/busybox:1.37.0",
                    "command": ["sleep", "3600"],
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "64Mi"}},
                    "security_context": SECURITY,
                }],
            },
        },
    },
)
