"""cloudml's guardrails: the CrossGuard policy pack and the pure rule functions `cloudml plan` runs.

Empty in this version: the rules, `PulumiPolicy.yaml` and `__main__.py` (the pack) arrive with the
guardrails issue, and `cloudml plan` reports no findings until then.
"""
