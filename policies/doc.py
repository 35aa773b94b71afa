"""The README's guardrails reference, generated from `policies.rules.RULES` and `PolicyConfig`.

`rules_markdown()` writes one table row per rule (name, level, what it checks, how to configure or
opt out: the rule's `opt_out`, plus the pack config keys its check reads) and one row per
PolicyConfig key (default, description, the rules that read it). README.md embeds it between
`<!-- policies:start -->` and `<!-- policies:end -->`; a test keeps the two equal.

    python -m policies.doc                  # print the reference
    python -m policies.doc --write-readme   # regenerate the README's copy in place
    python -m policies.doc --check          # exit 1 when the README's copy is stale
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from policies.core import PolicyConfig, Rule
from policies.pack import config_fields

README = Path(__file__).resolve().parent.parent / "README.md"
START_MARKER = "<!-- policies:start -->"
END_MARKER = "<!-- policies:end -->"
REGENERATE_COMMAND = ".venv/bin/python -m policies.doc --write-readme"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def rules_markdown(rules: Iterable[Rule] | None = None) -> str:
    if rules is None:
        from policies.rules import RULES

        rules = RULES
    rules = list(rules)
    lines = [
        f"_Generated from `policies/rules/` by `policies/doc.py`; do not edit by hand (regenerate with `{REGENERATE_COMMAND}`)._",
        "",
        "| rule | level | what it checks | configure or opt out |",
        "|---|---|---|---|",
    ]
    for rule in rules:
        keys = config_fields(rule)
        configure = _cell(rule.opt_out or "none")
        if keys:
            configure += " (pack config: " + ", ".join(f"`{k}`" for k in keys) + ")"
        lines.append(f"| `{rule.name}` | {rule.level} | {_cell(rule.description)} | {configure} |")
    if not rules:
        lines.append("| (none yet) | | | |")
    lines += ["", "| pack config key | default | meaning | read by |", "|---|---|---|---|"]
    defaults = PolicyConfig().model_dump(by_alias=True, mode="json")
    for name, field in PolicyConfig.model_fields.items():
        key = field.alias or name
        readers = [f"`{r.name}`" for r in rules if key in config_fields(r)]
        lines.append(f"| `{key}` | `{json.dumps(defaults[key])}` | {_cell(field.description or '')} | "
                     f"{', '.join(readers) or '—'} |")
    return "\n".join(lines) + "\n"


def embed(readme: str, markdown: str) -> str:
    pattern = re.compile(re.escape(START_MARKER) + r"\n.*?" + re.escape(END_MARKER), re.DOTALL)
    if len(pattern.findall(readme)) != 1:
        raise ValueError(f"README.md must hold exactly one {START_MARKER} ... {END_MARKER} block")
    return pattern.sub(lambda _: f"{START_MARKER}\n{markdown}{END_MARKER}", readme)


def main(argv: list[str]) -> int:
    if argv == ["--write-readme"]:
        text = README.read_text(encoding="utf-8")
        updated = embed(text, rules_markdown())
        if updated != text:
            README.write_text(updated, encoding="utf-8")
            print(f"updated the guardrails reference in {README}")
        else:
            print(f"{README} is up to date")
        return 0
    if argv == ["--check"]:
        if embed(README.read_text(encoding="utf-8"), rules_markdown()) != README.read_text(encoding="utf-8"):
            print(f"the guardrails reference in {README} is stale; run: {REGENERATE_COMMAND}", file=sys.stderr)
            return 1
        return 0
    if argv:
        print("usage: python -m policies.doc [--write-readme | --check]", file=sys.stderr)
        return 2
    sys.stdout.write(rules_markdown())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
