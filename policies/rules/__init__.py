"""Every rule of the pack, in the order findings are reported: Kubernetes workload rules
(`workloads`), then AWS resource rules (`cloud`)."""

from __future__ import annotations

from policies.core import Rule
from policies.rules import cloud, workloads

RULES: list[Rule] = [*workloads.RULES, *cloud.RULES]
