"""cloudml's guardrails: the CrossGuard policy pack and the pure rule functions `cloudml plan` runs.

- `core`: the framework (PlannedResource, Finding, Violation, PolicyConfig, ResourceRule, StackRule,
  evaluate) and helpers for Kubernetes objects; `pod_security`: Pod Security `restricted`.
- `rules/`: every rule (`rules.RULES`), pure functions over planned resources.
- `pack`: the rules as pulumi_policy policies (adapters from what the engine sends to
  PlannedResource, per-policy config schemas); `__main__` + `PulumiPolicy.yaml`: the pack itself
  (`pulumi preview --policy-pack policies`).
- `settings`: the settings file of `cloudml plan --policy-config` (pack config keys and per-rule
  levels), and its conversion to `--policy-pack-config` JSON.
- `doc`: the README's rule and config tables, generated from the rules.
"""
