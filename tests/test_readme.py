"""README.md tells the truth: the contract reference is the one generated from components/spec.py
and covers every field of every contract model; the quick-start commands are the ones CI and the
scripts run; the CLI reference lists every option `cloudml plan --help` shows; the exit codes are
the CLI's."""

from __future__ import annotations

import os
import re
import shlex
import types
import typing
from typing import Any, Union

import pytest
import typer
from pydantic import BaseModel
from typer.testing import CliRunner

from cloudml import cli, contract_doc
from cloudml.contract_doc import END_MARKER, REGENERATE_COMMAND, START_MARKER, contract_markdown
from components import spec
from components.render import RENDERED_KINDS

from conftest import REPO

README = REPO / "README.md"


@pytest.fixture(scope="module")
def readme() -> str:
    return README.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def generated() -> str:
    return contract_markdown()


def section_of(readme: str, title: str) -> str:
    """The body of the `## <title>` section, up to the next level-2 heading."""
    head = f"\n## {title}\n"
    assert head in readme, f"README.md has no `## {title}` section"
    return readme.split(head, 1)[1].split("\n## ", 1)[0]


# --- (a) the README's contract reference is the generated one -----------------------------------


def test_readme_embeds_the_generated_contract_exactly(readme: str, generated: str) -> None:
    assert readme.count(START_MARKER) == 1 and readme.count(END_MARKER) == 1, "one pair of contract markers"
    between = readme.split(START_MARKER, 1)[1].split(END_MARKER, 1)[0]
    assert between == "\n" + generated, (
        "the stack contract reference in README.md is stale (components/spec.py changed); "
        f"regenerate it with: {REGENERATE_COMMAND}"
    )


def test_readme_documents_the_regenerate_command(readme: str) -> None:
    assert REGENERATE_COMMAND in section_of(readme, "Stack contract reference")


def test_regenerate_command_repairs_a_stale_readme(tmp_path, monkeypatch, capsys) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n\n{START_MARKER}\nold text\n{END_MARKER}\n\nafter\n", encoding="utf-8")
    monkeypatch.setattr(contract_doc, "README", stale)
    assert contract_doc.main(["--check"]) == 1
    assert contract_doc.main(["--write-readme"]) == 0
    assert stale.read_text(encoding="utf-8") == f"# x\n\n{START_MARKER}\n{contract_markdown()}{END_MARKER}\n\nafter\n"
    assert contract_doc.main(["--check"]) == 0


def test_cloudml_contract_prints_the_generated_contract(generated: str) -> None:
    result = CliRunner().invoke(cli.app, ["contract"])
    assert result.exit_code == 0, result.output
    assert result.stdout == generated


# --- (b) every field of every contract model is in the generated doc ---------------------------


def _strip(annotation: Any) -> Any:
    """Drop Annotated and Optional wrappers."""
    while True:
        if typing.get_origin(annotation) is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in args and len(args) == 2:
            annotation = next(a for a in args if a is not type(None))
            continue
        return annotation


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _aliases(model: type[BaseModel]) -> set[str]:
    return {f.alias or n for n, f in model.model_fields.items()}


def _kind_tag(model: type[BaseModel]) -> str:
    return typing.get_args(model.model_fields["kind"].annotation)[0]


def contract_models() -> tuple[dict[str, type[BaseModel]], dict[str, list[type[BaseModel]]]]:
    """Walk the models from the two roots, independently of the generator.

    Returns (YAML path -> model) for plain nested models and (list path -> member models) for
    tagged unions (workloads), whose members are documented as `<path> (kind: <tag>)`.
    """
    plain: dict[str, type[BaseModel]] = {}
    unions: dict[str, list[type[BaseModel]]] = {}

    def walk(model: type[BaseModel], path: str) -> None:
        plain[path] = model
        for name, field in model.model_fields.items():
            key = field.alias or name
            models = _models_in(field.annotation)
            if not models:
                continue
            outer = typing.get_origin(_strip(field.annotation))
            if outer is list:
                child = f"{path}.{key}[]"
            elif outer is dict:
                child = f"{path}.{key}.<{key.removesuffix('s')}>"
            else:
                child = f"{path}.{key}"
            if len(models) > 1:
                unions[child] = models
                # Nested models of the members: under `(every kind)` when every member has the field,
                # under `(kind: <tag>)` otherwise.
                shared = set.intersection(*(set(m.model_fields) for m in models))
                for member in models:
                    for member_name, member_field in member.model_fields.items():
                        nested = _models_in(member_field.annotation)
                        if len(nested) != 1:
                            continue
                        scope = "every kind" if member_name in shared else f"kind: {_kind_tag(member)}"
                        member_key = member_field.alias or member_name
                        inner = typing.get_origin(_strip(member_field.annotation))
                        suffix = (f".{member_key}[]" if inner is list
                                  else f".{member_key}.<{member_key.removesuffix('s')}>" if inner is dict
                                  else f".{member_key}")
                        walk(nested[0], f"{child} ({scope}){suffix}")
            else:
                walk(models[0], child)

    walk(spec.PlatformSpec, spec.PLATFORM_KEY)
    walk(spec.TeamSpec, spec.TEAM_KEY)
    return plain, unions


def parse_sections(markdown: str) -> dict[str, dict[str, list[str]]]:
    """`### \\`path\\`` heading -> {key: [type, default, description]}, plus the prose under "_text"."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in markdown.splitlines():
        heading = re.fullmatch(r"### `(.+)`", line)
        if heading:
            assert heading.group(1) not in sections, f"section {heading.group(1)} appears twice"
            current = sections.setdefault(heading.group(1), {"_text": []})
            continue
        if current is None:
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] if line.startswith("|") else []
        key = re.fullmatch(r"`([A-Za-z0-9]+)`", cells[0]) if cells else None
        if key:
            assert key.group(1) not in current, f"key {key.group(1)} listed twice"
            assert len(cells) == 4, f"row {line!r} does not have 4 cells"
            current[key.group(1)] = cells[1:]
        elif line and not line.startswith("|"):
            current["_text"].append(line)
    return sections


def keys(section: dict[str, list[str]]) -> set[str]:
    return {k for k in section if k != "_text"}


def test_walk_finds_the_whole_contract() -> None:
    """Guards the walker below: it must see the nested, list, dict and union models."""
    plain, unions = contract_models()
    assert {"cloudml:platform.gpuPools[]", "cloudml:platform.teams.<team>", "cloudml:platform.storage.lustre",
            "cloudml:team.defaults"} <= set(plain)
    assert {_kind_tag(m) for m in unions["cloudml:team.workloads[]"]} >= {"training", "sweep", "tensorboard"}
    assert len(unions["cloudml:team.workloads[]"]) == len(typing.get_args(typing.get_args(spec.Workload)[0]))


def test_every_model_and_field_is_documented(generated: str) -> None:
    plain, unions = contract_models()
    sections = parse_sections(generated)
    expected_headings = set(plain)
    for path, models in unions.items():
        expected_headings.add(f"{path} (every kind)")
        for member in models:
            heading = f"{path} (kind: {_kind_tag(member)})"
            expected_headings.add(heading)
            shared, own = keys(sections.get(f"{path} (every kind)", {})), keys(sections.get(heading, {}))
            assert own | shared == _aliases(member), f"{heading}: documented keys differ from {member.__name__}'s fields"
            assert "kind" in own, f"{heading} must document its `kind`"
    for path, model in plain.items():
        assert path in sections, f"{model.__name__} ({path}) has no section"
        assert keys(sections[path]) == _aliases(model), f"{path}: documented keys differ from {model.__name__}'s fields"
    assert set(sections) == expected_headings, "the doc has sections for paths the contract does not have, or misses some"


def test_each_section_carries_its_models_docstring(generated: str) -> None:
    plain, unions = contract_models()
    sections = parse_sections(generated)
    documented = dict(plain)
    for path, models in unions.items():
        documented.update({f"{path} (kind: {_kind_tag(m)})": m for m in models})
    for path, model in documented.items():
        first_line = model.__doc__.strip().splitlines()[0]
        assert any(first_line.replace("->", "-&gt;") in text for text in sections[path]["_text"]), (path, first_line)


def test_defaults_say_required_exactly_for_required_fields(generated: str) -> None:
    plain, unions = contract_models()
    sections = parse_sections(generated)
    checks = [(path, model) for path, model in plain.items()]
    for path, models in unions.items():
        for member in models:
            checks += [(f"{path} (kind: {_kind_tag(member)})", member), (f"{path} (every kind)", member)]
    for path, model in checks:
        for name, field in model.model_fields.items():
            row = sections[path].get(field.alias or name)
            if row is None:
                continue  # a union member's field documented in the other section
            assert (row[1] == "required") == field.is_required(), f"{path}.{field.alias or name}: default {row[1]!r}"
            assert row[0], f"{path}.{field.alias or name} has no type"


def test_descriptions_are_copied_from_the_fields(generated: str) -> None:
    sections = parse_sections(generated)
    row = sections["cloudml:platform.gpuPools[]"]["timeSlicingReplicas"]
    assert row[2] == spec.GpuPoolSpec.model_fields["time_slicing_replicas"].description


@pytest.mark.parametrize(
    ("path", "key", "type_", "default"),
    [
        ("cloudml:platform.gpuPools[]", "capacity", "one of: on-demand, spot", "`on-demand`"),
        ("cloudml:platform.gpuPools[]", "max", "integer 1–450", "required"),
        ("cloudml:platform.gpuPools[]", "instanceTypes", "non-empty list of string", "required"),
        ("cloudml:platform.network", "availabilityZones", "integer 2–6", "`3`"),
        ("cloudml:platform.network", "vpcCidr", "IPv4 CIDR string (/16 to /24)", "`10.40.0.0/16`"),
        ("cloudml:platform.teams.<team>", "gpuQuota", "integer ≥ 0", "required"),
        ("cloudml:platform.teams.<team>", "cpuQuota", "CPU quantity (e.g. 4, 0.5, 500m)", '`"64"`'),
        ("cloudml:platform.monitoring", "slackWebhookUrl", "secret string", "unset"),
        ("cloudml:platform.monitoring", "alertEmails", "list of email address", "`[]`"),
        ("cloudml:team.workloads[] (kind: training)", "ttlAfterFinished", "duration (e.g. 30m, 2h, 1d)", "unset"),
        ("cloudml:team.workloads[] (kind: training)", "kind", "`training`", "required"),
        ("cloudml:team.workloads[] (kind: devEnvironment)", "idleTimeout", "duration (e.g. 30m, 2h, 1d)", "`2h`"),
        ("cloudml:team.workloads[] (every kind)", "env", "mapping: environment variable name → string", "`{}`"),
    ],
)
def test_types_and_defaults_are_readable(generated: str, path: str, key: str, type_: str, default: str) -> None:
    row = parse_sections(generated)[path][key]
    assert row[:2] == [type_, default]


def test_kubernetes_versions_are_listed_as_quoted_strings(generated: str) -> None:
    # Unquoted, YAML reads 1.30 as the number 1.3: the doc must show the quotes users need.
    row = parse_sections(generated)["cloudml:platform"]["kubernetesVersion"]
    assert row[0] == "one of: " + ", ".join(f'"{v}"' for v in spec.SUPPORTED_KUBERNETES_VERSIONS)


def test_schedule_is_a_cron_schedule_and_names_are_dns_labels(generated: str) -> None:
    sections = parse_sections(generated)
    assert sections["cloudml:team.workloads[] (kind: training)"]["schedule"][0].startswith("cron schedule")
    assert sections["cloudml:platform.gpuPools[]"]["name"][0] == "DNS-1123 label (≤ 20 chars)"
    assert sections["cloudml:team.workloads[] (every kind)"]["name"][0] == "DNS-1035 label (starts with a letter, ≤ 40 chars)"


def test_kinds_without_a_template_are_marked_as_refused(generated: str) -> None:
    sections = parse_sections(generated)
    _, unions = contract_models()
    for member in unions["cloudml:team.workloads[]"]:
        text = " ".join(sections[f"cloudml:team.workloads[] (kind: {_kind_tag(member)})"]["_text"])
        assert ("refused" in text) == (_kind_tag(member) not in RENDERED_KINDS), _kind_tag(member)


def test_no_raw_html_outside_code_spans(generated: str) -> None:
    # GitHub would swallow `<team>` or `<stack>` written as plain text.
    prose = re.sub(r"`[^`]*`", "", generated)
    assert not re.search(r"<[A-Za-z/!]", prose), re.search(r".{20}<[A-Za-z/!].{20}", prose)


def test_generator_is_deterministic(generated: str) -> None:
    assert contract_markdown() == generated


# --- (c) the quick-start commands are the ones CI and the scripts use ---------------------------


def quick_start_commands(readme: str) -> list[str]:
    body = section_of(readme, "Quick start")
    block = re.search(r"```(?:sh|bash)?\n(.*?)```", body, re.DOTALL)
    assert block, "the Quick start section has no code block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip() and not line.strip().startswith("#")]


def commands_of(script: str) -> list[list[str]]:
    lines = (REPO / script).read_text(encoding="utf-8").splitlines()
    return [shlex.split(line) for line in lines if line.strip() and not line.strip().startswith("#")]


def test_quick_start_is_exactly_plan_then_test(readme: str) -> None:
    assert quick_start_commands(readme) == ["scripts/plan", "scripts/test"]


def test_ci_runs_exactly_the_readme_test_command(readme: str) -> None:
    test_command = quick_start_commands(readme)[1]
    invoked = [tok for cmd in commands_of(".ci/run") for tok in cmd if tok.startswith("scripts/")]
    assert invoked == [test_command]
    assert commands_of(".ci/run")[-1] == ["exec", test_command]


def test_quick_start_scripts_do_what_the_readme_says() -> None:
    for script in ("scripts/plan", "scripts/test", "scripts/bootstrap", ".ci/run"):
        assert os.access(REPO / script, os.X_OK), f"{script} is not executable"
    plan, test = commands_of("scripts/plan"), commands_of("scripts/test")
    bootstrap = (REPO / "scripts/bootstrap").read_text(encoding="utf-8")
    for commands in (plan, test):
        assert any(c and c[0].endswith("/scripts/bootstrap") for c in commands), "the scripts must bootstrap .venv"
    assert "-m venv .venv" in bootstrap and "-e '.[test]'" in bootstrap
    assert plan[-1][:3] == ["exec", ".venv/bin/cloudml", "plan"]
    assert re.search(r'if \[ "\$#" -eq 0 \]; then set -- --all; fi', (REPO / "scripts/plan").read_text(encoding="utf-8")), (
        "scripts/plan must default to --all"
    )
    assert test[-1][:4] == ["exec", ".venv/bin/python", "-m", "pytest"]


# --- (d) the CLI reference lists every option of `cloudml plan --help` -------------------------


def plan_help() -> str:
    result = CliRunner().invoke(cli.app, ["plan", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    return result.output


def test_help_parsing_sees_every_declared_option() -> None:
    """Guards the next test: what we read from --help is what the command declares."""
    command = typer.main.get_command(cli.app).commands["plan"]
    declared = {opt for p in command.params for opt in p.opts if opt.startswith("--")} | {"--help"}
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", plan_help()))
    assert shown == declared


def test_cli_reference_lists_every_plan_option(readme: str) -> None:
    reference = section_of(readme, "CLI reference")
    options = set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", plan_help()))
    assert options, "no options read from `cloudml plan --help`"
    missing = sorted(o for o in options if not re.search(rf"`{re.escape(o)}[` ]", reference))
    assert not missing, f"README's CLI reference misses {missing}"
    command = typer.main.get_command(cli.app).commands["plan"]
    for argument in (p for p in command.params if not p.opts[0].startswith("-")):
        assert f"`{argument.name.upper()}`" in reference
    for choice in cli.Format:
        assert re.search(rf"`--format [^`]*\b{choice.value}\b", reference)


def test_cli_reference_lists_every_command(readme: str) -> None:
    reference = section_of(readme, "CLI reference")
    for name in typer.main.get_command(cli.app).commands:
        assert f"`cloudml {name}" in reference, f"README's CLI reference misses `cloudml {name}`"


def test_exit_codes_table_matches_the_cli(readme: str) -> None:
    body = section_of(readme, "Quick start")
    rows = [int(m) for m in re.findall(r"^\| (\d) \|", body, re.MULTILINE)]
    assert rows == sorted({cli.EXIT_OK, cli.EXIT_POLICY, cli.EXIT_CONFIG, cli.EXIT_INTERNAL})
