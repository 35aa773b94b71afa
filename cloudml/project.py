"""Another Pulumi Python program, planned offline with `cloudml plan --project DIR`.

A platform team's own Pulumi programs (an extra add-on, a shared bucket, a hand-written manifest)
deserve the same guardrails as cloudml's stacks. `PulumiProject.load(DIR)` reads DIR/Pulumi.yaml the
way the Pulumi CLI does (project `name`, `runtime` python, `main`, `stackConfigDir`) and gives the
program as a function that `cloudml.engine.run_program` runs under the same mocks: the program's
directory is the working directory and the first import path, as under `pulumi preview`.
Not read: `config:` defaults declared in Pulumi.yaml (put values in the stack file) and `pulumi
config` set outside the stack file; a program that reads only its stack file plans as it previews.
"""

from __future__ import annotations

import os
import runpy
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from components.errors import ConfigError, ConfigProblem, display_value

PROJECT_FILE = "Pulumi.yaml"


@dataclass(frozen=True)
class PulumiProject:
    """A Python Pulumi project directory: its name, its program file and its stack config directory."""

    directory: Path
    name: str
    main: Path
    stacks_dir: Path

    @classmethod
    def load(cls, directory: Path) -> "PulumiProject":
        """Read DIR/Pulumi.yaml; ConfigError naming the file, the key and the fix on bad input."""
        path = directory / PROJECT_FILE
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError([ConfigProblem(
                str(path), f"cannot be read ({error.strerror or error})",
                "pass --project a directory holding a Pulumi.yaml (a Pulumi project)",
            )]) from None
        except yaml.YAMLError as error:
            raise ConfigError([ConfigProblem(str(path), f"is not valid YAML: {error}", "fix the YAML syntax")]) from None
        if not isinstance(document, dict):
            raise ConfigError([ConfigProblem(str(path), "must be a YAML mapping", "write `name:` and `runtime: python`")])
        problems = []
        name = document.get("name")
        if not isinstance(name, str) or not name:
            problems.append(ConfigProblem(f"{path}: name", "is required", "name the project", display_value(name)))
        runtime = document.get("runtime")
        runtime_name = runtime.get("name") if isinstance(runtime, dict) else runtime
        if runtime_name != "python":
            problems.append(ConfigProblem(
                f"{path}: runtime", "is not python; the offline plan runs Python programs only",
                "plan a Python Pulumi program (runtime: python)", display_value(runtime_name),
            ))
        main = directory / str(document.get("main") or "")
        if main.is_dir() or not document.get("main"):
            main = main / "__main__.py"
        if not main.is_file():
            problems.append(ConfigProblem(
                f"{path}: main", f"leads to {main}, which does not exist", "add the program's __main__.py or set `main:`",
            ))
        stacks_dir = directory / str(document.get("stackConfigDir") or ".")
        if problems:
            raise ConfigError(problems)
        return cls(directory=directory, name=name, main=main, stacks_dir=stacks_dir)

    def program(self) -> Callable[[], None]:
        """The program as a function: DIR's main file run as `__main__` (inside `activated()`)."""
        main = str(self.main.resolve())
        return lambda: runpy.run_path(main, run_name="__main__")

    @contextmanager
    def activated(self) -> Iterator[None]:
        """For one whole run, applies included: the program's directory as the working directory and
        the first import path, as under `pulumi preview`; afterwards the old ones back, and the
        project's own modules forgotten, so the next stack imports (and declares) them afresh."""
        directory = str(self.main.parent.resolve())
        previous, modules = os.getcwd(), set(sys.modules)
        sys.path.insert(0, directory)
        os.chdir(directory)
        try:
            yield
        finally:
            os.chdir(previous)
            if directory in sys.path:
                sys.path.remove(directory)
            for name in set(sys.modules) - modules:
                origin = getattr(sys.modules[name], "__file__", None) or ""
                if origin.startswith(directory + os.sep):
                    del sys.modules[name]
