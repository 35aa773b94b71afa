"""Shared fixtures: the repository's paths, the planned sample stacks, and temporary stacks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cloudml.plan import Planner, StackPlan
from cloudml.stackfile import list_stacks

REPO = Path(__file__).resolve().parent.parent
STACKS = REPO / "stacks"
SAMPLE_STACKS = ("platform-dev", "team-vision", "team-nlp")


@pytest.fixture(scope="session")
def sample_plans() -> dict[str, StackPlan]:
    """Every stack in stacks/, planned once for the whole session (planning is deterministic)."""
    planner = Planner(STACKS)
    return {name: planner.plan(name) for name in list_stacks(STACKS)}


def write_stack(stacks_dir: Path, name: str, config: dict) -> Path:
    """Write stacks_dir/Pulumi.<name>.yaml with this `config:` mapping.

    Written as JSON (valid YAML 1.2, every string quoted), so values read back exactly as given:
    PyYAML's YAML 1.1 dump would leave strings such as "3e-5" unquoted, which YAML 1.2 reads as numbers."""
    stacks_dir.mkdir(parents=True, exist_ok=True)
    path = stacks_dir / f"Pulumi.{name}.yaml"
    path.write_text(json.dumps({"config": config}, indent=2, ensure_ascii=False), encoding="utf-8")
    return path


def sample_config(name: str) -> dict:
    """The `config:` mapping of a sample stack, to copy and mutate in tests."""
    return yaml.safe_load((STACKS / f"Pulumi.{name}.yaml").read_text(encoding="utf-8"))["config"]


def run_components(build, config: dict | None = None, stack: str = "unit") -> dict[str, dict]:
    """Run `build()` (which creates components) under the plan's Pulumi mocks; return the recorded
    resources by name, in the same shape as plan.json's `resources` (type, parent, inputs, ...)."""
    from cloudml.engine import run_program
    from cloudml.plan import resource_record
    from cloudml.stackfile import StackFile

    stack_file = StackFile(name=stack, path=Path(f"Pulumi.{stack}.yaml"), config=config or {"aws:region": "us-west-2"})
    run = run_program(stack_file, program=build)
    return {r.name: resource_record(r) for r in run.registrations}
