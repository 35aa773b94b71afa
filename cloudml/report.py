"""The human-readable side of `cloudml plan`: a resource tree by component, the GPU budget,
warnings and policy findings (grouped by resource, each with its fix, and a summary line)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.tree import Tree

from cloudml.plan import StackPlan, summary


def _kind(plan: StackPlan) -> str:
    return f"program of project {escape(plan.project)}" if plan.kind == "program" else plan.kind


def print_plan(console: Console, plan: StackPlan, folder: str) -> None:
    info = summary(plan)
    console.print(
        f"[bold]Plan for stack {plan.stack}[/bold] ({_kind(plan)}): what `pulumi preview` would create, "
        "computed offline under mocks"
    )
    console.print(resource_tree(plan))
    protected = f", {info['protected']} protected" if info["protected"] else ""
    console.print(
        f"{info['resources']} resources{protected}; {info['kubernetesObjects']} Kubernetes objects "
        f"({', '.join(f'{n} {k}' for k, n in info['kubernetesObjectsByKind'].items()) or 'none'})"
    )
    print_budget(console, plan)
    for warning in plan.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", soft_wrap=True)
    print_findings(console, plan)
    console.print(f"Wrote {escape(folder)}/plan.json and {escape(folder)}/manifests/", soft_wrap=True, markup=True)


def resource_tree(plan: StackPlan) -> Tree:
    """Resources nested under their parents, each component with the count of what it holds."""
    children: dict[str, list[dict]] = {}
    for record in plan.resources:
        children.setdefault(record["parent"], []).append(record)
    objects_by_source: dict[str, list[str]] = {}
    for item in plan.objects:
        meta = item.object.get("metadata", {})
        objects_by_source.setdefault(item.source, []).append(f"{item.object.get('kind')}/{meta.get('name')}")

    def count(urn: str) -> int:
        return sum(1 + count(c["urn"]) for c in children.get(urn, []))

    def label(record: dict) -> str:
        text = f"{escape(record['type'])} [bold]{escape(record['name'])}[/bold]"
        held = objects_by_source.get(record["urn"]) or []
        if record["type"].endswith("ConfigGroup"):
            noun = "Kubernetes object" if len(held) == 1 else "Kubernetes objects"
            text += f" ({len(held)} {noun}: {escape(', '.join(held))})"
        elif not record["custom"]:
            text += f" ({count(record['urn'])} resources)"
        if record["read"]:
            text += " (read)"
        if record["protect"]:
            text += " [protected]"
        return text

    def add(node: Tree, urn: str) -> None:
        for record in sorted(children.get(urn, []), key=lambda r: (r["custom"], r["type"], r["name"])):
            add(node.add(label(record)), record["urn"])

    known = {r["urn"] for r in plan.resources}
    root = Tree(f"stack {escape(plan.stack)}")
    for parent in sorted(children):
        if parent not in known:  # the stack itself
            add(root, parent)
    return root


def print_budget(console: Console, plan: StackPlan) -> None:
    budget = plan.gpu_budget
    if plan.kind == "program":
        console.print("GPU budget: not computed (only cloudml's own stacks declare GPU pools and quotas)")
    elif plan.kind == "platform":
        console.print(
            f"GPU budget: pools reach {budget['capacityGpus']} GPUs at max size; "
            f"team quotas total {budget['quotaGpus']}"
            + (f" (oversubscribed by {budget['oversubscribedBy']})" if budget["oversubscribedBy"] else "")
        )
        for name, pool in budget["pools"].items():
            console.print(
                f"  pool {name}: {pool['gpuType']} x{pool['gpusPerNode']}/node, {pool['minNodes']}-{pool['maxNodes']} "
                f"nodes ({pool['capacity']}), up to {pool['maxGpus']} GPUs"
            )
    else:
        console.print(
            f"GPU budget: workloads can hold {budget['requestedGpus']} of the team's {budget['quotaGpus']} GPU quota "
            f"at once (headroom {budget['headroomGpus']})"
        )
        for name, w in budget["workloads"].items():
            if w["concurrentGpus"]:
                console.print(
                    f"  {escape(name)}: {w['concurrentGpus']} x {escape(str(w['gpuType']))}"
                    f" ({w['gpusPerPod']} per pod)"
                )


def print_findings(console: Console, plan: StackPlan) -> None:
    """Violations grouped by resource (type and name), each with its fix, then a one-line summary."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for finding in plan.findings:
        groups.setdefault((finding["resourceType"], finding["resourceName"], finding["urn"]), []).append(finding)
    for (resource_type, resource_name, _), found in groups.items():
        console.print(f"{escape(resource_type)} [bold]{escape(resource_name)}[/bold]", soft_wrap=True)
        for finding in found:
            colour = "red" if finding["level"] == "mandatory" else "yellow"
            console.print(f"  [{colour}]\\[{finding['level']}][/{colour}] {escape(finding['rule'])}: "
                          f"{escape(finding['message'])}", soft_wrap=True)
            console.print(f"      fix: {escape(finding['fix'])}", soft_wrap=True)
    policy = summary(plan)["policy"]
    if plan.findings:
        console.print(f"Policy: {policy['mandatory']} mandatory, {policy['advisory']} advisory violation(s)")
    else:
        console.print(f"Policy: no violations ({policy['rules']} rules)")
