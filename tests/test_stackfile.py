"""cloudml/stackfile.py: reading `stacks/Pulumi.<stack>.yaml` the way Pulumi would, offline.

Proves that `config:` is read, that `secure:` values anywhere become the `[secret]` placeholder with
their key marked secret (the ciphertext is gone from the result), that every malformed stack file
gets the exact problem text, and that list_stacks puts platform stacks first.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudml.stackfile import StackFile, list_stacks, load_stack_file
from components.errors import ConfigError
from conftest import STACKS, write_stack

CIPHER_A = "v1:AAAAcipherAAAA:c2VjcmV0LXdlYmhvb2s="
CIPHER_B = "v1:BBBBcipherBBBB:c2VjcmV0LWxpc3QtaXRlbQ=="
CIPHER_C = "v1:CCCCcipherCCCC:c2VjcmV0LXRva2Vu"


def write_text(stacks_dir: Path, name: str, text: str) -> Path:
    stacks_dir.mkdir(parents=True, exist_ok=True)
    path = stacks_dir / f"Pulumi.{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problem_lines(stacks_dir: Path, name: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_stack_file(stacks_dir, name)
    return [str(p) for p in caught.value.problems]


# --- reading ------------------------------------------------------------------------------------


def test_reads_the_config_mapping(tmp_path):
    """The `config:` mapping comes back key for key, with the stack's name and file path."""
    config = {"cloudml:team": {"name": "vision", "platformStack": "organization/cloudml/platform-dev"}}
    path = write_stack(tmp_path, "team-vision", config)
    stack = load_stack_file(tmp_path, "team-vision")
    assert isinstance(stack, StackFile)
    assert (stack.name, stack.path, stack.config, stack.secret_keys) == ("team-vision", path, config, [])
    assert stack.kind == "team"


def test_platform_stack_is_recognised_by_its_config(tmp_path):
    """A stack with cloudml:platform is a platform stack, whatever its name."""
    write_stack(tmp_path, "prod", {"aws:region": "eu-west-1", "cloudml:platform": {"name": "ml"}})
    assert load_stack_file(tmp_path, "prod").kind == "platform"


def test_pulumi_config_is_strings_with_objects_as_json(tmp_path):
    """The map handed to set_all_config holds strings; objects are JSON that decodes to the config."""
    write_stack(tmp_path, "p", {"aws:region": "us-west-2", "cloudml:platform": {"name": "ml", "gpuPools": []}})
    config = load_stack_file(tmp_path, "p").pulumi_config()
    assert config["aws:region"] == "us-west-2"
    assert json.loads(config["cloudml:platform"]) == {"name": "ml", "gpuPools": []}


def test_secure_values_anywhere_become_the_placeholder(tmp_path):
    """`secure:` nodes (nested in mappings, in lists, at the top) become [secret]; their keys are secret."""
    write_text(tmp_path, "platform-x", f"""\
config:
  aws:region: us-west-2
  cloudml:platform:
    name: ml
    monitoring:
      slackWebhookUrl:
        secure: {CIPHER_A}
      alertEmails: [ml-oncall@example.com]
  other:list: [{{secure: "{CIPHER_B}"}}, plain]
  other:token:
    secure: {CIPHER_C}
  plain:key: hello
""")
    stack = load_stack_file(tmp_path, "platform-x")
    assert stack.config == {
        "aws:region": "us-west-2",
        "cloudml:platform": {
            "name": "ml",
            "monitoring": {"slackWebhookUrl": "[secret]", "alertEmails": ["ml-oncall@example.com"]},
        },
        "other:list": ["[secret]", "plain"],
        "other:token": "[secret]",
        "plain:key": "hello",
    }
    assert stack.secret_keys == ["cloudml:platform", "other:list", "other:token"]
    dumped = repr(stack) + json.dumps(stack.pulumi_config())
    for cipher in (CIPHER_A, CIPHER_B, CIPHER_C):
        assert cipher not in dumped


def test_mapping_with_secure_and_other_keys_is_not_a_secret(tmp_path):
    """Only a node that is exactly `{secure: ...}` is a Pulumi secret; a mapping that merely has the key is data."""
    write_stack(tmp_path, "t", {"cloudml:team": {"name": "x", "env": {"secure": "yes", "other": "no"}}})
    stack = load_stack_file(tmp_path, "t")
    assert stack.config["cloudml:team"]["env"] == {"secure": "yes", "other": "no"}
    assert stack.secret_keys == []


def test_sample_platform_stack_reads_as_a_platform():
    """The committed platform-dev stack reads as a platform stack with its region and no secrets."""
    stack = load_stack_file(STACKS, "platform-dev")
    assert (stack.kind, stack.config["aws:region"], stack.secret_keys) == ("platform", "us-west-2", [])
    assert stack.config["cloudml:platform"]["name"] == "ml-dev"


def test_empty_file_is_an_empty_config(tmp_path):
    """An empty stack file has no config (the contract check later says what is missing)."""
    write_text(tmp_path, "empty", "")
    assert load_stack_file(tmp_path, "empty").config == {}


def test_pulumi_top_level_keys_are_accepted(tmp_path):
    """encryptionsalt / secretsprovider / encryptedkey / environment are Pulumi's own and pass."""
    write_text(tmp_path, "t", "encryptionsalt: v1:abc\nsecretsprovider: awskms://alias/x\nencryptedkey: abc\n"
                              "environment: [dev]\nconfig:\n  cloudml:team: {name: x}\n")
    assert load_stack_file(tmp_path, "t").config == {"cloudml:team": {"name": "x"}}


# --- problems -----------------------------------------------------------------------------------


def test_unknown_cloudml_key(tmp_path):
    """A cloudml:* key other than platform/team is refused with a did-you-mean and both allowed keys named."""
    write_stack(tmp_path, "t", {"cloudml:teams": {"name": "x"}})
    assert problem_lines(tmp_path, "t") == [
        "cloudml:teams: unknown key. "
        "Fix: did you mean `cloudml:team`? use cloudml:platform (platform stacks) or cloudml:team (team stacks)"
    ]


def test_unnamespaced_key_is_refused(tmp_path):
    """A config key without `namespace:` is refused (Pulumi would put it under the project)."""
    write_stack(tmp_path, "t", {"region": "us-west-2", "cloudml:team": {"name": "x"}})
    with pytest.raises(ConfigError) as caught:
        load_stack_file(tmp_path, "t")
    [problem] = caught.value.problems
    assert (problem.path, problem.message, problem.value) == ("region", "config keys must be namespaced", None)


def test_unnamespaced_key_fix_points_at_a_real_namespace(tmp_path):
    """The fix for an un-namespaced key must not suggest a key cloudml refuses."""
    write_stack(tmp_path, "t", {"region": "us-west-2", "cloudml:team": {"name": "x"}})
    assert problem_lines(tmp_path, "t") == [
        "region: config keys must be namespaced. Fix: write it as <namespace>:region (e.g. aws:region); "
        "cloudml reads only cloudml:platform and cloudml:team"
    ]


def test_unknown_top_level_key(tmp_path):
    """A top-level key other than Pulumi's own is refused, listing the allowed ones."""
    write_text(tmp_path, "t", "config:\n  cloudml:team: {name: x}\nconfg:\n  aws:region: us-west-2\n")
    assert problem_lines(tmp_path, "t") == [
        "Pulumi.t.yaml: confg: unknown top-level key. "
        "Fix: remove it; Pulumi stack files have config, encryptedkey, encryptionsalt, environment, secretsprovider"
    ]


@pytest.mark.parametrize(("text", "where"), [
    pytest.param("config:\n  cloudml:team:\n    name: vision\n   platformStack: x\n",
                 "at line 4, column 4: expected <block end>, but found '<block mapping start>'", id="bad-indent"),
    pytest.param("config:\n  cloudml:team: {name: vision\n  aws:region: x\n",
                 "at line 3, column 13: expected ',' or '}', but got ':'", id="unclosed-flow-mapping"),
    pytest.param("config:\n\tcloudml:team: x\n",
                 "at line 2, column 1: found character '\\t' that cannot start any token", id="tab-indent"),
])
def test_invalid_yaml_names_line_and_column(tmp_path, text, where):
    """Broken YAML is one problem naming the file, the line and column, and what the parser expected."""
    path = write_text(tmp_path, "t", text)
    assert problem_lines(tmp_path, "t") == [f"{path}: is not valid YAML {where}. Fix: fix the YAML syntax"]


def test_document_that_is_not_a_mapping(tmp_path):
    """A stack file whose top level is a list says it needs `config:`."""
    path = write_text(tmp_path, "t", "- config\n")
    assert problem_lines(tmp_path, "t") == [f"{path}: must be a YAML mapping with a `config:` key. Fix: add `config:`"]


def test_config_that_is_not_a_mapping(tmp_path):
    """`config:` holding a list is refused."""
    write_text(tmp_path, "t", "config: [a, b]\n")
    assert problem_lines(tmp_path, "t") == [
        "Pulumi.t.yaml: config: must be a mapping of namespace:key to values. Fix: fix `config:`"
    ]


def test_missing_file_lists_known_stacks(tmp_path):
    """Planning a stack with no file names the file it looked for and the stacks that do exist."""
    write_stack(tmp_path, "team-b", {"cloudml:team": {}})
    write_stack(tmp_path, "platform-dev", {"aws:region": "us-west-2", "cloudml:platform": {}})
    assert problem_lines(tmp_path, "team-a") == [
        f"{tmp_path / 'Pulumi.team-a.yaml'}: no such stack file. "
        f"Fix: create it, or plan one of the stacks in {tmp_path}: platform-dev, team-b"
    ]


def test_missing_file_in_empty_dir_says_none(tmp_path):
    """With no stack files at all, the known-stacks list says `none`."""
    assert problem_lines(tmp_path, "x") == [
        f"{tmp_path / 'Pulumi.x.yaml'}: no such stack file. Fix: create it, or plan one of the stacks in {tmp_path}: none"
    ]


def test_platform_stack_needs_aws_region(tmp_path):
    """A platform stack without aws:region is refused (the cluster needs a region)."""
    write_stack(tmp_path, "platform-x", {"cloudml:platform": {"name": "ml"}})
    assert problem_lines(tmp_path, "platform-x") == [
        "aws:region: is required for a platform stack. Fix: add `aws:region: us-west-2` (your region)"
    ]


def test_team_stack_needs_no_region(tmp_path):
    """A team stack reads its region from the platform; no aws:region needed."""
    write_stack(tmp_path, "team-x", {"cloudml:team": {"name": "x"}})
    assert load_stack_file(tmp_path, "team-x").config == {"cloudml:team": {"name": "x"}}


def test_every_stack_file_problem_is_reported_at_once(tmp_path):
    """Top-level, namespace and region problems of one file come back together."""
    write_text(tmp_path, "platform-x", "config:\n  cloudml:teams: {}\n  region: x\n  cloudml:platform: {name: x}\nfoo: 1\n")
    with pytest.raises(ConfigError) as caught:
        load_stack_file(tmp_path, "platform-x")
    assert [p.path for p in caught.value.problems] == ["Pulumi.platform-x.yaml: foo", "aws:region", "cloudml:teams", "region"]
    assert str(caught.value).startswith("4 problems in the stack config:\n  - Pulumi.platform-x.yaml: foo: unknown top-level key.")


# --- listing ------------------------------------------------------------------------------------


def test_list_stacks_puts_platform_stacks_first(tmp_path):
    """Stacks that declare cloudml:platform (which teams need) come first whatever their name, each group
    sorted by name; other files are ignored."""
    for name in ("team-b", "alpha", "team-a", "platform-dev"):
        write_stack(tmp_path, name, {"cloudml:team": {"name": "x"}})
    write_stack(tmp_path, "prod", {"cloudml:platform": {"name": "x"}})
    write_stack(tmp_path, "platform-dev", {"cloudml:platform": {"name": "x"}})
    (tmp_path / "Pulumi.yaml").write_text("name: cloudml\n", encoding="utf-8")
    (tmp_path / "notes.yaml").write_text("x: 1\n", encoding="utf-8")
    assert list_stacks(tmp_path) == ["platform-dev", "prod", "alpha", "team-a", "team-b"]


def test_list_stacks_of_the_repository():
    """The sample stacks directory lists the platform before the teams."""
    assert list_stacks(STACKS) == ["platform-dev", "team-nlp", "team-vision"]


def test_list_stacks_of_an_empty_dir(tmp_path):
    """No stack files, no stacks."""
    assert list_stacks(tmp_path) == []


def test_secure_value_in_a_field_that_is_not_secret_is_refused(tmp_path):
    """`secure:` only where the contract keeps a secret: elsewhere `pulumi up` would put the decrypted
    text into manifests and state unmarked, so the plan refuses it and names the path."""
    write_text(tmp_path, "team-x", f"""\
config:
  cloudml:team:
    name: x
    platformStack: platform-dev
    workloads:
      - kind: training
        name: job
        env:
          API_TOKEN:
            secure: {CIPHER_A}
""")
    assert problem_lines(tmp_path, "team-x") == [
        "cloudml:team.workloads[0].env.API_TOKEN: is a `secure:` value, but this field is not a secret. "
        "Fix: write it in plain text; secrets belong only in fields documented as secret (e.g. monitoring.slackWebhookUrl)"
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("config:\n  cloudml:team: {name: a}\n  cloudml:team: {name: b}\n",
     "duplicate key 'cloudml:team'; a key may appear once per mapping"),
    ("config:\n  aws:region: &r us-west-2\n  cloudml:team: {name: *r}\n",
     "aliases (*name) are not allowed in stack files; write the value out"),
], ids=["duplicate-key", "alias"])
def test_yaml_constructs_pulumi_would_read_differently_are_refused(tmp_path, text, expected):
    """Duplicate keys (PyYAML keeps the last silently, Go refuses) and aliases (exponential expansion) are errors."""
    write_text(tmp_path, "t", text)
    [line] = problem_lines(tmp_path, "t")
    assert expected in line and line.startswith(str(tmp_path / "Pulumi.t.yaml") + ": is not valid YAML at line 3")


def test_scalars_resolve_as_yaml_1_2_like_the_pulumi_cli():
    """The Pulumi CLI reads YAML 1.2: `3e-5` is a number, `1:30`, `on` and `yes` are strings."""
    from cloudml.yaml12 import load

    assert load("a: 3e-5\nb: 1:30\nc: on\nd: yes\ne: 0x1f\nf: ~\ng: True\n") == {
        "a": 3e-05, "b": "1:30", "c": "on", "d": "yes", "e": 31, "f": None, "g": True,
    }


@pytest.mark.parametrize("name", ["..", ".", "../x", "/tmp/x", "a b", "x" * 101])
def test_stack_names_that_are_paths_are_refused(tmp_path, name):
    """A stack name is never used as a path: anything outside Pulumi's stack-name characters is refused."""
    with pytest.raises(ConfigError) as caught:
        load_stack_file(tmp_path, name)
    [problem] = caught.value.problems
    assert (problem.path, problem.message) == ("stack", "is not a stack name")


def test_region_must_be_a_region(tmp_path):
    """aws:region is checked, so a list or a typo does not plan as if it were fine."""
    write_stack(tmp_path, "p", {"aws:region": ["us-west-2"], "cloudml:platform": {"name": "x"}})
    assert problem_lines(tmp_path, "p") == [
        'aws:region: is not an AWS region (got ["us-west-2"]). Fix: write a region name such as us-west-2'
    ]


def test_team_secrets_must_be_secure_values(tmp_path):
    """A team secret written in plain text would be committed with the stack file: refused, with the
    `pulumi config set --secret` command that stores it properly; a `secure:` value is accepted."""
    write_text(tmp_path, "team-x", f"""\
config:
  cloudml:team:
    name: x
    platformStack: platform-dev
    secrets:
      tracker:
        api-key: plain-text-key
        token:
          secure: {CIPHER_A}
""")
    assert problem_lines(tmp_path, "team-x") == [
        "cloudml:team.secrets.tracker.api-key: is a secret written in plain text (it would be committed with the "
        "stack file). Fix: remove it from the file and run `pulumi config set --secret --path "
        "'cloudml:team.secrets.tracker.api-key' <value>`"
    ]


def test_platform_slack_webhook_in_plain_text_is_refused(tmp_path):
    """The same rule holds for every secret field of the contract, e.g. the platform's Slack webhook."""
    write_stack(tmp_path, "platform-x", {"aws:region": "us-west-2", "cloudml:platform": {
        "name": "ml", "monitoring": {"slackWebhookUrl": "https://hooks.slack.com/services/T0/B0/x"}}})
    assert problem_lines(tmp_path, "platform-x") == [
        "cloudml:platform.monitoring.slackWebhookUrl: is a secret written in plain text (it would be committed with "
        "the stack file). Fix: remove it from the file and run `pulumi config set --secret --path "
        "'cloudml:platform.monitoring.slackWebhookUrl' <value>`"
    ]
