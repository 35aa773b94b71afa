"""The policy settings file: the pack's configuration and per-rule enforcement levels, in one place.

One YAML or JSON file serves both enforcement paths:

    allowedRegistries: ["123456789012.dkr.ecr.*.amazonaws.com", nvcr.io]   # any PolicyConfig key
    maxGpuPoolNodes: 8
    rules:                          # per-rule enforcement, like the pack's per-policy config
      model-service-availability: mandatory
      dev-stack-uses-spot: disabled

- `cloudml plan --policy-config FILE` reads it with `load_settings` (every problem at once, each with
  the key, the value and the fix).
- `python -m policies.settings FILE > pack-config.json` writes the same settings in the format of
  `pulumi preview --policy-pack policies --policy-pack-config pack-config.json`: one entry per policy,
  holding its `enforcementLevel` override and the config keys that policy reads (`pack_config`).

Module name: `settings`, not `config`, because Pulumi runs the pack with `policies/` first on
`sys.path`, where a top-level module named `config` could shadow another package's.
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import pydantic
import yaml
from pydantic import Field

from policies.core import PolicyConfig, Rule

EnforcementSetting = Literal["disabled", "advisory", "mandatory"]
RULES_KEY = "rules"


class PolicySettings(PolicyConfig):
    """PolicyConfig plus `rules`: rule name -> disabled | advisory | mandatory."""

    rules: dict[str, EnforcementSetting] = Field(
        default_factory=dict, description="Per-rule enforcement: disabled, advisory or mandatory (overrides the rule's level).",
    )

    def policy_config(self) -> PolicyConfig:
        return PolicyConfig.model_validate(self.model_dump(exclude={RULES_KEY}))


class PolicySettingsError(Exception):
    """The settings file is unreadable or invalid; `problems` are ConfigProblems (key, message, fix, value)."""

    def __init__(self, path: Path, problems: list):
        self.path = path
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        lines = [f"policy config {self.path}: {count} problem{'s' if count != 1 else ''}:"]
        return "\n".join([*lines, *(f"  - {p}" for p in self.problems)])


def load_settings(path: Path, rules: Iterable[Rule]) -> PolicySettings:
    """Read and validate a settings file against PolicyConfig and the names of `rules`."""
    # Imported here: the pack itself never reads a settings file, and stays free of components/.
    from components.errors import ConfigProblem, display_value, from_pydantic

    def fail(key: str, message: str, fix: str, value: str | None = None) -> PolicySettingsError:
        return PolicySettingsError(path, [ConfigProblem(key, message, fix, value)])

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise fail("(file)", f"cannot be read ({error.strerror or error})", "pass an existing YAML or JSON file") from None
    except UnicodeDecodeError as error:
        raise fail("(file)", f"is not UTF-8 text (byte 0x{error.object[error.start]:02x} at offset {error.start})",
                   "save the file as UTF-8") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as error:
        raise fail("(file)", f"is not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({error})".replace("\n", " "),
                   "fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise fail("(file)", "must be a mapping of settings", "write keys such as maxGpuPoolNodes: 8 and rules: {...}",
                   display_value(data))
    problems = []
    try:
        settings = PolicySettings.model_validate(data)
    except pydantic.ValidationError as error:
        problems = [replace(p, path=p.path.lstrip(".")) for p in from_pydantic("", PolicySettings, error)]
        settings = None
    names = [rule.name for rule in rules]
    raw_rules = data.get(RULES_KEY)
    for name in raw_rules if isinstance(raw_rules, dict) else {}:
        if name not in names:
            close = difflib.get_close_matches(str(name), names, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            problems.append(ConfigProblem(f"{RULES_KEY}.{name}", "is not a rule of the pack",
                                          f"{hint}use one of: {', '.join(names) or '(none)'}"))
    if problems or settings is None:
        raise PolicySettingsError(path, sorted(problems, key=lambda p: p.path))
    return settings


def apply_levels(rules: Iterable[Rule], levels: Mapping[str, str]) -> list[Rule]:
    """The rules with their enforcement overridden; disabled rules left out."""
    out: list[Rule] = []
    for rule in rules:
        level = levels.get(rule.name, rule.level)
        if level != "disabled":
            out.append(rule if level == rule.level else replace(rule, level=level))
    return out


def pack_config(settings: PolicySettings, rules: Iterable[Rule]) -> dict[str, Any]:
    """The settings as a `--policy-pack-config` document: per policy, its level override and the
    config keys it reads (see `policies.pack.config_fields`)."""
    from policies.pack import config_fields

    values = settings.policy_config().model_dump(by_alias=True, mode="json")
    document: dict[str, Any] = {}
    for rule in rules:
        entry = {key: values[key] for key in config_fields(rule)}
        if rule.name in settings.rules:
            entry["enforcementLevel"] = settings.rules[rule.name]
        if entry:
            document[rule.name] = entry
    return document


def main(argv: list[str]) -> int:
    from policies.rules import RULES

    if len(argv) != 1 or argv[0].startswith("-"):
        print("usage: python -m policies.settings SETTINGS_FILE  (prints the --policy-pack-config JSON)", file=sys.stderr)
        return 2
    try:
        settings = load_settings(Path(argv[0]), RULES)
    except PolicySettingsError as error:
        print(error.render(), file=sys.stderr)
        return 2
    sys.stdout.write(json.dumps(pack_config(settings, RULES), indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
