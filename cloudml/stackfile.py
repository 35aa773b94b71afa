"""Reading `stacks/Pulumi.<stack>.yaml` the way Pulumi would, for the offline plan.

`secure:` values cannot be decrypted offline (that needs the stack's secrets provider); they are
replaced by the placeholder `[secret]` and the config key is marked secret, so a secret never
reaches stdout, plan.json or a manifest.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cloudml import yaml12
from components.errors import SECRET_DISPLAY, ConfigError, ConfigProblem, display_value, format_path, is_secret_field
from components.spec import PLATFORM_KEY, TEAM_KEY, PlatformSpec, TeamSpec

PROJECT = "cloudml"
STACK_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-\d")
_KNOWN_CLOUDML_KEYS = (PLATFORM_KEY, TEAM_KEY)
_TOP_LEVEL_KEYS = {"config", "encryptionsalt", "secretsprovider", "encryptedkey", "environment"}


@dataclass
class StackFile:
    """One stack's config as Pulumi would hand it to the program."""

    name: str
    path: Path
    config: dict[str, Any]  # "namespace:key" -> value (secure values replaced by the placeholder)
    secret_keys: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "platform" if PLATFORM_KEY in self.config else "team"

    def pulumi_config(self) -> dict[str, str]:
        """The config map for `pulumi.runtime.set_all_config`: strings, objects as JSON."""
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in self.config.items()}


def stack_path(stacks_dir: Path, name: str) -> Path:
    return stacks_dir / f"Pulumi.{name}.yaml"


def list_stacks(stacks_dir: Path) -> list[str]:
    """Every stack with a config file in `stacks_dir`, platform stacks first (teams need them)."""
    names = [p.name[len("Pulumi."):-len(".yaml")] for p in stacks_dir.glob("Pulumi.*.yaml")]
    return sorted(names, key=lambda n: (not _declares_platform(stack_path(stacks_dir, n)), n))


def _declares_platform(path: Path) -> bool:
    """Whether the file sets cloudml:platform (unreadable files sort with the teams; planning reports them)."""
    try:
        document = yaml12.load(path.read_text(encoding="utf-8")) or {}
        return isinstance(document, dict) and PLATFORM_KEY in (document.get("config") or {})
    except (OSError, yaml.YAMLError, AttributeError):
        return False


def check_stack_name(name: str) -> None:
    """Stack names as Pulumi allows them; anything else (paths, `..`) is refused before any file access."""
    if not STACK_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError([ConfigProblem(
            "stack", "is not a stack name", "use letters, digits, '-', '_' and '.' (at most 100), as in stacks/Pulumi.<stack>.yaml",
            display_value(name),
        )])


def load_stack_file(stacks_dir: Path, name: str) -> StackFile:
    """Read and check one stack file; ConfigError with every problem on bad input."""
    check_stack_name(name)
    path = stack_path(stacks_dir, name)
    if not path.is_file():
        known = ", ".join(list_stacks(stacks_dir)) or "none"
        raise ConfigError([ConfigProblem(
            str(path), "no such stack file", f"create it, or plan one of the stacks in {stacks_dir}: {known}"
        )])
    try:
        document = yaml12.load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([ConfigProblem(
            str(path), f"is not valid YAML{where}: {getattr(error, 'problem', error)}", "fix the YAML syntax"
        )]) from None
    document = document or {}
    problems = []
    if not isinstance(document, dict):
        raise ConfigError([ConfigProblem(str(path), "must be a YAML mapping with a `config:` key", "add `config:`")])
    for key in sorted(set(document) - _TOP_LEVEL_KEYS):
        problems.append(ConfigProblem(
            f"{path.name}: {key}", "unknown top-level key", f"remove it; Pulumi stack files have {', '.join(sorted(_TOP_LEVEL_KEYS))}"
        ))
    raw_config = document.get("config") or {}
    if not isinstance(raw_config, dict):
        problems.append(ConfigProblem(f"{path.name}: config", "must be a mapping of namespace:key to values", "fix `config:`"))
        raw_config = {}
    config, secret_keys = {}, []
    for key, value in raw_config.items():
        if not isinstance(key, str) or ":" not in key:
            problems.append(ConfigProblem(
                str(key), "config keys must be namespaced",
                f"write it as <namespace>:{key} (e.g. aws:region); cloudml reads only {PLATFORM_KEY} and {TEAM_KEY}",
            ))
            continue
        if key.startswith(f"{PROJECT}:") and key not in _KNOWN_CLOUDML_KEYS:
            close = difflib.get_close_matches(key, _KNOWN_CLOUDML_KEYS, n=1)
            hint = f"did you mean `{close[0]}`? " if close else ""
            problems.append(ConfigProblem(
                key, "unknown key", f"{hint}use {PLATFORM_KEY} (platform stacks) or {TEAM_KEY} (team stacks)"
            ))
            continue
        cleaned, secure_paths = _strip_secure(value)
        config[key] = cleaned
        if secure_paths:
            secret_keys.append(key)
            problems.extend(_misplaced_secrets(key, secure_paths))
        problems.extend(_plain_secrets(key, value))
    if PLATFORM_KEY in config and "aws:region" not in config:
        problems.append(ConfigProblem("aws:region", "is required for a platform stack", "add `aws:region: us-west-2` (your region)"))
    region = config.get("aws:region")
    if region is not None and not (isinstance(region, str) and _REGION.fullmatch(region)):
        problems.append(ConfigProblem("aws:region", "is not an AWS region", "write a region name such as us-west-2", display_value(region)))
    if problems:
        raise ConfigError(problems)
    return StackFile(name=name, path=path, config=config, secret_keys=sorted(secret_keys))


def _strip_secure(value: Any, path: tuple = (), found: list | None = None) -> tuple[Any, list[tuple]]:
    """Replace every `{secure: ...}` node with the placeholder; return the paths where they were."""
    found = [] if found is None else found
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            found.append(path)
            return SECRET_DISPLAY, found
        return {k: _strip_secure(v, (*path, k), found)[0] for k, v in value.items()}, found
    if isinstance(value, list):
        return [_strip_secure(v, (*path, i), found)[0] for i, v in enumerate(value)], found
    return value, found


def _leaves(value: Any, path: tuple = ()):
    """(path, value) of every scalar in a config tree; a `{secure: ...}` node counts as one scalar."""
    if isinstance(value, dict) and set(value) != {"secure"}:
        for k, v in value.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, (*path, i))
    else:
        yield path, value


def _plain_secrets(key: str, value: Any) -> list[ConfigProblem]:
    """A secret field written in plain text would sit in git and in every plan: refuse it."""
    model = {PLATFORM_KEY: PlatformSpec, TEAM_KEY: TeamSpec}.get(key)
    if model is None:
        return []
    return [
        ConfigProblem(
            format_path(key, list(path)), "is a secret written in plain text (it would be committed with the stack file)",
            f"remove it from the file and run `pulumi config set --secret --path '{format_path(key, list(path))}' <value>`",
        )
        for path, leaf in _leaves(value)
        if isinstance(leaf, str) and path and is_secret_field(model, list(path))
    ]


def _misplaced_secrets(key: str, paths: list[tuple]) -> list[ConfigProblem]:
    """A `secure:` value only where the contract keeps a secret: elsewhere the program would read the
    decrypted text as plain config (into manifests and state, unmarked)."""
    model = {PLATFORM_KEY: PlatformSpec, TEAM_KEY: TeamSpec}.get(key)
    if model is None:
        return []  # provider config (aws:*, kubernetes:*) handles its own secrets
    return [
        ConfigProblem(
            format_path(key, list(path)), "is a `secure:` value, but this field is not a secret",
            "write it in plain text; secrets belong only in fields documented as secret (e.g. monitoring.slackWebhookUrl)",
        )
        for path in paths
        if not is_secret_field(model, list(path))
    ]
