"""Hostile-input fuzzing of the renderer (hypothesis).

Proves the rendering rule of DESIGN.md: a config value that reaches a template as free text
(command and args items, env values, annotation values) comes back byte for byte in the parsed
objects and can never change the shape of a manifest; `yaml_scalar` round-trips any nested
dict/list/str/int/bool/None; and names that become Kubernetes names are accepted by the spec if and
only if they are DNS-1123 labels of the allowed length.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from components.errors import ConfigError
from components.render import WorkloadContext, render, yaml_scalar
from components.spec import load_team
import workload_fixtures

IMAGE = "111122223333.dkr.ecr.us-west-2.amazonaws.com/cloudml/trainer:0.1.0"
PLATFORM_STACK = "org/cloudml/platform-x"
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")  # \Z: `$` would allow a trailing newline
# Workload names also name Services and JobSet pods: DNS-1035 (a letter first).
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_NAMES = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Strings that break naive YAML or Jinja emitters.
HOSTILE = [
    'double " quote',
    "single ' quote",
    "key: value",
    "trailing colon:",
    "# not a comment",
    "a #comment",
    "line\nbreak",
    "cr\r\nlf",
    "{{ x }}",
    "{% if %}",
    "{# c #}",
    "---",
    "...",
    "&anchor",
    "*alias",
    "!tag",
    "!!python/object:os.system",
    "\u2028",
    "\u2029",
    "\x85",
    "\ufeff",
    "emoji \U0001f680\U0001f9e0",
    "NUL\x00byte",
    "\t tab and spaces  ",
    " leading space",
    "",
    "yes",
    "null",
    "~",
    "3e-5",
    "0x1F",
    "- item",
    "[flow, seq]",
    "{flow: map}",
    "| literal",
    "> folded",
    "%YAML 1.2",
    "@at",
    "`backtick`",
    "back\\slash \\n",
    "\\u0041",
    "é中文ñ",
    "\x7f\x1b[31mred",
]


VIEW = workload_fixtures.platform_view()


def team_config(workload: dict, name: str = "vision") -> dict:
    return {
        "name": name,
        "platformStack": PLATFORM_STACK,
        "defaults": {"image": IMAGE, "gpuType": "a10g"},
        "workloads": [{"kind": "training", **workload}],
    }


def env_names(n: int) -> list[str]:
    return [f"VAR_{i}" for i in range(n)]


def annotation_keys(n: int) -> list[str]:
    return [f"example.com/note-{i}" for i in range(n)]


def render_training(command: list[str], args: list[str], env_values: list[str], annotation_values: list[str],
                    schedule: str | None = None) -> dict:
    workload: dict[str, Any] = {
        "name": "fuzz",
        "gpus": 1,
        "command": command,
        "args": args,
        "env": dict(zip(env_names(len(env_values)), env_values)),
        "annotations": dict(zip(annotation_keys(len(annotation_values)), annotation_values)),
    }
    if schedule:
        workload["schedule"] = schedule
    spec = load_team(team_config(workload))
    objects = render("training", WorkloadContext(spec, spec.workloads[0], VIEW))
    assert len(objects) == 1
    return objects[0]


@lru_cache(maxsize=None)
def plain_render(shape: tuple[int, int, int, int], schedule: str | None) -> dict:
    """The same workload with plain ASCII values: the reference shape."""
    c, a, e, n = shape
    return render_training(["plain"] * c, ["plain"] * a, ["plain"] * e, ["plain"] * n, schedule)


def key_paths(node: Any, path: tuple = ()) -> set[tuple]:
    """Every key path of a parsed object; list positions are part of the path."""
    paths = {path}
    if isinstance(node, dict):
        for key, value in node.items():
            paths |= key_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            paths |= key_paths(value, (*path, i))
    return paths


def pod_template(obj: dict) -> dict:
    spec = obj["spec"]["jobTemplate"]["spec"] if obj["kind"] == "CronJob" else obj["spec"]
    return spec["template"]


def annotation_maps(obj: dict) -> list[dict]:
    maps = [obj["metadata"], pod_template(obj)["metadata"]]
    if obj["kind"] == "CronJob":
        maps.append(obj["spec"]["jobTemplate"]["metadata"])
    return maps


def check_round_trip(command, args, env_values, annotation_values, schedule=None) -> None:
    obj = render_training(command, args, env_values, annotation_values, schedule)
    container = pod_template(obj)["spec"]["containers"][0]

    # Byte for byte where the values were put.
    assert container["command"] == command
    assert container["args"] == args
    # The user's variables follow the CLOUDML_* ones cloudml sets.
    user_env = [e for e in container["env"] if not e["name"].startswith("CLOUDML_")]
    assert user_env == [{"name": n, "value": v} for n, v in zip(env_names(len(env_values)), env_values)]
    expected_annotations = dict(zip(annotation_keys(len(annotation_values)), annotation_values))
    for meta in annotation_maps(obj):
        assert meta["annotations"] == expected_annotations

    # The shape never changes: same key paths as with plain values...
    reference = plain_render((len(command), len(args), len(env_values), len(annotation_values)), schedule)
    assert key_paths(obj) == key_paths(reference)

    # ...and, once the fuzzed values are swapped for the plain ones, the very same object
    # (no hostile value leaked into any other field).
    swapped = copy.deepcopy(obj)
    swapped_container = pod_template(swapped)["spec"]["containers"][0]
    swapped_container["command"] = ["plain"] * len(command)
    swapped_container["args"] = ["plain"] * len(args)
    for item in swapped_container["env"]:
        if item["name"].startswith("VAR_"):
            item["value"] = "plain"
    for meta in annotation_maps(swapped):
        meta["annotations"] = {k: "plain" for k in meta["annotations"]}
    assert swapped == reference


free_text = st.lists(st.text(), min_size=1, max_size=4)


@FUZZ
@given(command=free_text, args=free_text, env_values=free_text, annotation_values=free_text,
       schedule=st.sampled_from([None, "0 3 * * *"]))
@example(command=HOSTILE, args=HOSTILE, env_values=HOSTILE, annotation_values=HOSTILE, schedule=None)
@example(command=HOSTILE[::-1], args=HOSTILE[::-1], env_values=HOSTILE[::-1], annotation_values=HOSTILE[::-1],
         schedule="0 3 * * *")
def test_free_text_comes_back_byte_for_byte_and_never_changes_the_manifest_shape(command, args, env_values,
                                                                                 annotation_values, schedule):
    check_round_trip(command, args, env_values, annotation_values, schedule)


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_each_hostile_string_round_trips_in_every_free_text_position(text):
    check_round_trip([text], [text, text], [text], [text])


# --- yaml_scalar directly ---------------------------------------------------------------------

# Mapping keys stay under 100 characters (escaped: at most 1002, under YAML's 1024-character limit
# for implicit keys); longer keys are a known bug, see test_yaml_scalar_round_trips_dict_keys_of_any_length.
config_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=100), children, max_size=5),
    max_leaves=25,
)


@FUZZ
@given(config_values)
@example(HOSTILE)
@example({text: text for text in HOSTILE})
@example({"": [None, True, 0, -1, 2**64, "", {"nested": {"": []}}]})
def test_yaml_scalar_round_trips_any_nested_config_value(value):
    text = yaml_scalar(value)
    assert "\n" not in text and text.isascii()
    assert yaml.safe_load(text) == value


# Regression: implicit flow keys are limited to 1024 characters, and escaping makes keys longer.
@pytest.mark.parametrize("key", ["k" * 1023, "\u00e9" * 171, "\U0001f600" * 103], ids=["ascii-1023", "latin-171", "emoji-103"])
def test_yaml_scalar_round_trips_dict_keys_of_any_length(key):
    value = {key: "v", "short": [1]}
    assert yaml.safe_load(yaml_scalar(value)) == value


@FUZZ
@given(st.text())
def test_yaml_scalar_string_is_never_read_back_as_another_type(text):
    parsed = yaml.safe_load(yaml_scalar(text))
    assert type(parsed) is str and parsed == text


# --- names that become Kubernetes names -------------------------------------------------------

name_candidates = st.one_of(
    st.text(max_size=50),
    st.text(alphabet="az09-_.A \n", max_size=45),
    st.from_regex(r"[a-z0-9][-a-z0-9]{0,44}", fullmatch=True),
    st.from_regex(r"[a-z0-9]([-a-z0-9]{0,42}[a-z0-9])?", fullmatch=True),
)


def workload_name_accepted(name: str) -> tuple[bool, list]:
    try:
        spec = load_team(team_config({"name": name}))
    except ConfigError as error:
        return False, error.problems
    assert spec.workloads[0].name == name
    return True, []


@FUZZ
@given(name_candidates)
@example("a")
@example("a" * 40)
@example("a" * 41)
@example("abc\n")
@example("-abc")
@example("abc-")
@example("Abc")
@example("a.b")
@example("a_b")
@example("ａｂｃ")  # full-width letters
@example("١٢٣")  # Arabic-Indic digits: \d would match them, [0-9] must not
@example("3d-seg")  # a DNS-1123 label, but Service and JobSet pod names must start with a letter
def test_spec_accepts_a_workload_name_iff_it_is_a_dns1035_label_of_at_most_40_chars(name):
    accepted, problems = workload_name_accepted(name)
    valid = DNS1035_LABEL.match(name) is not None and len(name) <= 40
    assert accepted == valid, (name, problems)
    if not accepted:
        assert [p.path for p in problems] == ["cloudml:team.workloads[0].name"], problems


@FUZZ_NAMES
@given(name_candidates)
def test_an_accepted_workload_name_becomes_the_object_name_unchanged(name):
    accepted, _ = workload_name_accepted(name)
    if not accepted:
        assert not (DNS1035_LABEL.match(name) and len(name) <= 40)
        return
    spec = load_team(team_config({"name": name}))
    obj = render("training", WorkloadContext(spec, spec.workloads[0], VIEW))[0]
    assert obj["metadata"]["name"] == name
    assert obj["metadata"]["labels"]["cloudml.io/workload"] == name


@FUZZ_NAMES
@given(st.one_of(st.text(max_size=30), st.from_regex(r"[a-z0-9][-a-z0-9]{0,28}", fullmatch=True)))
@example("a" * 24)
@example("a" * 25)
def test_spec_accepts_a_team_name_iff_it_is_a_dns1123_label_of_at_most_24_chars(name):
    try:
        load_team(team_config({"name": "job"}, name=name))
        accepted, problems = True, []
    except ConfigError as error:
        accepted, problems = False, error.problems
    valid = DNS1123_LABEL.match(name) is not None and len(name) <= 24
    assert accepted == valid, (name, problems)
    if not accepted:
        assert [p.path for p in problems] == ["cloudml:team.name"], problems
