"""Golden renders: the manifests of every sample stack are exactly the committed files.

`tests/golden/<stack>/<file>.yaml` holds, byte for byte, what `cloudml plan <stack>` writes to
`out/<stack>/manifests/<file>.yaml`. A change to a template, the renderer or a sample stack shows
up here as a unified diff to review. To accept a change, regenerate and review the git diff:

    CLOUDML_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_golden.py -q
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest
import yaml

from cloudml.plan import manifest_files
from cloudml.stackfile import list_stacks

REPO = Path(__file__).resolve().parent.parent
STACKS = REPO / "stacks"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_ENV = "CLOUDML_UPDATE_GOLDEN"
UPDATING = os.environ.get(UPDATE_ENV) == "1"
SAMPLE_STACKS = list_stacks(STACKS)


def read_golden(folder: Path) -> dict[str, str]:
    """file name -> exact text (bytes decoded as UTF-8, no newline translation)."""
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes().decode("utf-8") for p in sorted(folder.glob("*.yaml"))}


def write_golden(folder: Path, files: dict[str, str]) -> None:
    """Make `folder` hold exactly `files` (stale golden files are removed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.yaml"):
        if stale.name not in files:
            stale.unlink()
    for name, text in files.items():
        (folder / name).write_bytes(text.encode("utf-8"))


def mismatch_message(stack: str, expected: dict[str, str], actual: dict[str, str]) -> str | None:
    """None when equal; otherwise what differs, with a unified diff per changed file."""
    parts = []
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    if missing:
        parts.append(f"golden files no longer rendered: {', '.join(missing)}")
    if extra:
        parts.append(f"rendered files without a golden file: {', '.join(extra)}")
    for name in sorted(set(expected) & set(actual)):
        if expected[name] != actual[name]:
            diff = difflib.unified_diff(
                expected[name].splitlines(keepends=True),
                actual[name].splitlines(keepends=True),
                fromfile=f"tests/golden/{stack}/{name}",
                tofile=f"rendered/{stack}/{name}",
            )
            parts.append("".join(diff))
    if not parts:
        return None
    return (f"manifests of {stack} differ from tests/golden/{stack}/ "
            f"(if intended: {UPDATE_ENV}=1 pytest tests/test_golden.py, then review the git diff)\n" + "\n".join(parts))


@pytest.mark.parametrize("stack", SAMPLE_STACKS)
def test_manifests_equal_the_golden_files(sample_plans, stack):
    actual = manifest_files(sample_plans[stack])
    assert actual, f"{stack} renders no manifest file: nothing to compare"
    folder = GOLDEN / stack
    if UPDATING:
        write_golden(folder, actual)
    expected = read_golden(folder)
    assert expected, f"no golden files in {folder}; generate them with {UPDATE_ENV}=1"
    message = mismatch_message(stack, expected, actual)
    assert message is None, message


@pytest.mark.parametrize("stack", SAMPLE_STACKS)
def test_golden_files_parse_back_to_the_planned_objects(sample_plans, stack):
    """The golden text is not just equal text: it holds exactly the planned objects, in order."""
    plan = sample_plans[stack]
    golden = read_golden(GOLDEN / stack)
    assert golden
    for name, text in golden.items():
        parsed = [doc for doc in yaml.safe_load_all(text) if doc is not None]
        assert parsed == [o.object for o in plan.objects if o.file == name], name
    assert sum(len(list(yaml.safe_load_all(t))) for t in golden.values()) == len(plan.objects)


def test_no_golden_folder_for_a_stack_that_does_not_exist():
    folders = {p.name for p in GOLDEN.iterdir() if p.is_dir()}
    assert folders == set(SAMPLE_STACKS)


def test_mismatch_message_shows_a_unified_diff_and_missing_and_extra_files():
    expected = {"a.yaml": "kind: Job\nname: x\n", "gone.yaml": "x: 1\n"}
    actual = {"a.yaml": "kind: Job\nname: y\n", "new.yaml": "y: 2\n"}
    message = mismatch_message("team-z", expected, actual)
    assert message is not None
    assert "--- tests/golden/team-z/a.yaml" in message
    assert "+++ rendered/team-z/a.yaml" in message
    assert "-name: x\n" in message and "+name: y\n" in message
    assert "golden files no longer rendered: gone.yaml" in message
    assert "rendered files without a golden file: new.yaml" in message
    assert mismatch_message("team-z", expected, dict(expected)) is None


def test_write_then_read_golden_is_byte_exact_and_drops_stale_files(tmp_path):
    folder = tmp_path / "stack"
    write_golden(folder, {"old.yaml": "x: 1\n"})
    files = {"a.yaml": "text: \"caf\u00e9\\r\\n\"\n", "b.yaml": "x: 1\n"}
    write_golden(folder, files)
    assert read_golden(folder) == files
