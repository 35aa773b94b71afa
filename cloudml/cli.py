"""The `cloudml` command line.

`cloudml plan <stack>` / `cloudml plan --all`: the offline plan, with the policy rules evaluated.
Exit status 0 when every stack plans cleanly, 1 when a planned stack violates a mandatory rule
(every plan is still written; stderr names the stacks), 2 when a stack's config or the
`--policy-config` file is invalid (the message names every problem; no traceback; 2 wins over 1
when both happen with --all: an invalid stack was not checked at all), 3 on an internal error (or,
with `--project`, when that project's program fails). `cloudml plan <stack> --project DIR` plans
another Pulumi Python program under the same mocks and rules (cloudml.project).
`cloudml contract`: the stack contract reference (Markdown), generated from components/spec.py.
"""

from __future__ import annotations

import json
import shutil
import sys
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from cloudml.plan import Planner, StackConfigError, StackPlan, write_plan
from cloudml.project import PulumiProject
from cloudml.report import print_plan
from cloudml.stackfile import STACK_NAME, list_stacks
from components.errors import ConfigError
from policies.settings import PolicySettings, PolicySettingsError, load_settings

EXIT_OK, EXIT_POLICY, EXIT_CONFIG, EXIT_INTERNAL = 0, 1, 2, 3

app = typer.Typer(add_completion=False, no_args_is_help=True, help="cloudml: a GPU ML platform on AWS, as Pulumi code.")


class Format(str, Enum):
    text = "text"
    json = "json"


@app.callback()
def main() -> None:
    """cloudml: plan and inspect platform and team stacks."""


@app.command()
def plan(
    stack: str | None = typer.Argument(None, help="Stack to plan (the <stack> of stacks/Pulumi.<stack>.yaml)."),
    all_stacks: bool = typer.Option(False, "--all", help="Plan every stack in the stacks directory."),
    stacks_dir: Path | None = typer.Option(None, "--stacks-dir", help="Where the Pulumi.<stack>.yaml files are (default: stacks)."),
    project_dir: Path | None = typer.Option(
        None, "--project", help="Plan another Pulumi Python program (a directory with Pulumi.yaml; stacks from its "
        "stackConfigDir) under the same mocks and guardrails, instead of cloudml's own."
    ),
    out: Path = typer.Option(Path("out"), "--out", help="Write out/<stack>/plan.json and manifests/ here."),
    output_format: Format = typer.Option(Format.text, "--format", help="text for people, json for CI (stdout)."),
    policy_config: Path | None = typer.Option(
        None, "--policy-config", help="YAML/JSON file: policy pack config keys and per-rule levels (rules: {name: disabled|advisory|mandatory})."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show the traceback of an internal error."),
) -> None:
    """Show what a stack would create, offline: no cloud credentials, no Pulumi CLI."""
    # Wide enough that resource names do not wrap in CI logs; a terminal keeps its own width.
    console = Console(stderr=output_format is Format.json, highlight=False, width=None if sys.stdout.isatty() else 160)
    errors = Console(stderr=True, highlight=False)
    if all_stacks == (stack is not None):
        errors.print("Name one stack, or pass --all (not both).", soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG)
    project = None
    if project_dir is not None:
        if stacks_dir is not None:
            errors.print("Pass --project or --stacks-dir, not both: a project's stacks are in its stackConfigDir.", soft_wrap=True)
            raise typer.Exit(EXIT_CONFIG)
        try:
            project = PulumiProject.load(project_dir)
        except ConfigError as error:
            errors.print(f"project {project_dir}: {error.render()}", soft_wrap=True, markup=False)
            raise typer.Exit(EXIT_CONFIG) from None
        stacks_dir = project.stacks_dir
    stacks_dir = stacks_dir if stacks_dir is not None else Path("stacks")
    names = list_stacks(stacks_dir) if all_stacks else [stack]
    if not names:
        errors.print(f"No stack files (Pulumi.<stack>.yaml) in {stacks_dir}.", soft_wrap=True, markup=False)
        raise typer.Exit(EXIT_CONFIG)
    settings = PolicySettings()
    if policy_config is not None:
        from policies.rules import RULES

        try:
            settings = load_settings(policy_config, RULES)
        except PolicySettingsError as error:
            errors.print(error.render(), soft_wrap=True, markup=False)
            if output_format is Format.json:
                # The same envelope as every other run; nothing was planned.
                invalid = [{"policyConfig": str(error.path), "problems": [vars(p) for p in error.problems]}]
                _print_json([], invalid)
            raise typer.Exit(EXIT_CONFIG) from None
    planner = Planner(stacks_dir, settings, project=project)
    plans: list[StackPlan] = []
    failures: list[dict] = []
    policy_failed: list[str] = []
    status = EXIT_OK
    for name in names:
        try:
            result = planner.plan(name)
        except StackConfigError as error:
            status = max(status, EXIT_CONFIG)
            _remove_stale_plan(out, error.stack)
            failures.append({"stack": error.stack, "problems": [vars(p) for p in error.error.problems]})
            # Problem text quotes config values verbatim: never let rich read them as markup.
            errors.print(f"[red]stack {escape(error.stack)}:[/red] {escape(error.error.render())}", soft_wrap=True)
            continue
        except Exception as error:  # noqa: BLE001 - a bug, not bad input: short message, traceback on --debug
            if debug:
                raise
            if project is not None:  # not cloudml's code: the program's own failure
                errors.print(f"the program of project {project.name} ({project.main}) failed while planning {name}: "
                             f"{type(error).__name__}: {error}\nRe-run with --debug for the traceback.",
                             soft_wrap=True, markup=False)
            else:
                errors.print(f"internal error while planning {name}: {type(error).__name__}: {error}\n"
                             "Re-run with --debug for the traceback and report it.", soft_wrap=True, markup=False)
            raise typer.Exit(EXIT_INTERNAL) from None
        folder = write_plan(result, out)
        plans.append(result)
        if any(f["level"] == "mandatory" for f in result.findings):
            status = max(status, EXIT_POLICY)
            policy_failed.append(result.stack)
        if output_format is Format.text:
            print_plan(console, result, str(folder))
            console.print()
    if policy_failed:
        errors.print(f"Policy: mandatory violations in stack(s) {', '.join(policy_failed)}; see the findings "
                     "above (each with its fix) or in plan.json `findings`.", soft_wrap=True, markup=False)
    if output_format is Format.json:
        _print_json([p.to_json() for p in plans], failures)
    raise typer.Exit(status)


def _print_json(stacks: list[dict], invalid: list[dict]) -> None:
    """The `--format json` document: one shape whatever happened, so CI can read it without first
    checking the exit status. `invalid` holds `{"stack": ..., "problems": [...]}` per invalid stack,
    or `{"policyConfig": <file>, "problems": [...]}` when the --policy-config file is invalid."""
    document = {"stacks": stacks, "invalid": invalid}
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def _remove_stale_plan(out: Path, stack: str) -> None:
    """An invalid stack has no plan: leave no stale plan.json or manifests for CI to diff. Only ever
    a direct child of `out` named like a stack (the name comes from the command line)."""
    if not STACK_NAME.fullmatch(stack) or stack in (".", ".."):
        return
    folder = out / stack
    if folder.is_dir() and folder.resolve().parent == out.resolve():
        shutil.rmtree(folder)


@app.command()
def contract() -> None:
    """Print the stack contract reference (Markdown) generated from components/spec.py."""
    from cloudml.contract_doc import contract_markdown

    sys.stdout.write(contract_markdown())


if __name__ == "__main__":  # pragma: no cover
    app()
