"""images/: the Dockerfiles (pinned bases, non-root numeric USER, no `latest`, every COPY source and
the ENTRYPOINT present in the build context), and the files baked into the images agreeing with
what the workload templates render: TF Serving's monitoring and batching configs and flags, and
the dev environment's Jupyter idle shutdown and token, and every sample workload that runs
`python -m cloudml_trainer` passing arguments the trainer's own parsers accept. No Docker here: the
entrypoint scripts are run with stand-in binaries that record their arguments."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cloudml.stackfile import list_stacks, load_stack_file
from components.render import WorkloadContext, render
from components.spec import DEFAULT_DEV_IMAGE, DEFAULT_SERVING_IMAGE, BatchingSpec, load_team
from components.workloads.dev_environment import IDLE_TIMEOUT_ENV, TOKEN_ENV, jupyter_command
from components.workloads.model_service import CONFIG_DIR, batching_config, monitoring_config, server_flags

REPO = Path(__file__).resolve().parent.parent
IMAGES = REPO / "images"
TRAINER_SRC = IMAGES / "trainer" / "src"
if str(TRAINER_SRC) not in sys.path:
    sys.path.insert(0, str(TRAINER_SRC))
IMAGE_NAMES = ("trainer", "serving", "devenv")
# repository[:tag] with an exact version tag: 2.20.0-gpu, 2.20.0-gpu-jupyter (or an @sha256 digest).
PINNED = re.compile(r"^[a-z0-9./_-]+(:\d+\.\d+\.\d+(-[a-z0-9.-]+)?|@sha256:[0-9a-f]{64})$")


def instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of images/<name>/Dockerfile, continuation lines joined."""
    text = (IMAGES / name / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def of(name: str, keyword: str) -> list[str]:
    return [rest for k, rest in instructions(name) if k == keyword]


def copies(name: str) -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY (flags such as --chmod dropped)."""
    result = []
    for rest in of(name, "COPY"):
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        result.append((parts[:-1], parts[-1]))
    return result


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_dockerfile_base_is_pinned_and_nothing_says_latest(name):
    (base,) = of(name, "FROM")  # single stage
    assert PINNED.match(base), f"{name}: base image {base!r} is not pinned to an exact version"
    assert not re.search(r"\blatest\b", (IMAGES / name / "Dockerfile").read_text(), re.IGNORECASE)
    # Every pip install names exact versions (a local project path aside).
    for run in of(name, "RUN"):
        for command in re.findall(r"pip install ([^&;]+)", run):
            for arg in shlex.split(command):
                assert arg.startswith("-") or arg == "." or "==" in arg, f"{name}: unpinned pip install {arg!r}"


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_dockerfile_runs_as_a_numeric_non_root_user(name):
    users = of(name, "USER")
    # Numeric, so the kubelet can verify runAsNonRoot (it cannot resolve names); 1000 as the templates run.
    assert users and users[-1] == "1000"
    assert not of(name, "ADD"), "COPY only: ADD fetches URLs and unpacks archives implicitly"


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_every_copy_source_and_the_entrypoint_exist_in_the_build_context(name):
    context = IMAGES / name
    destinations = {}
    for sources, destination in copies(name):
        for source in sources:
            assert (context / source).exists(), f"{name}: COPY source {source} missing from {context}"
            target = destination + Path(source).name if destination.endswith("/") else destination
            destinations[target] = context / source
    (entrypoint,) = of(name, "ENTRYPOINT")
    command = json.loads(entrypoint)  # exec form: signals reach the process, no shell in between
    script = destinations.get(command[0])
    assert script is not None, f"{name}: ENTRYPOINT {command[0]} is not a file COPYed from the build context"
    assert script.read_text().startswith("#!/bin/sh\n") and os.access(script, os.X_OK)
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0  # parses


def test_trainer_image_matches_the_tensorflow_the_suite_tests_and_installs_cloudml_trainer():
    (base,) = of("trainer", "FROM")
    version = re.fullmatch(r"tensorflow/tensorflow:(\d+\.\d+\.\d+)-gpu", base).group(1)
    test_extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    assert f"tensorflow-cpu=={version}" in test_extra
    project = tomllib.loads((IMAGES / "trainer" / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]
    assert not any(d.startswith("tensorflow") for d in project["project"]["dependencies"])  # the base image's GPU build stays
    assert (IMAGES / "trainer" / "src" / "cloudml_trainer" / "__main__.py").is_file()
    (devenv_base,) = of("devenv", "FROM")
    assert devenv_base == f"tensorflow/tensorflow:{version}-gpu-jupyter"


def test_default_dev_image_is_the_devenv_base():
    """The devEnvironment default image (components/spec.py) is the TensorFlow the devenv image and
    the trainer are built on, so a notebook behaves like the training job. (Fails while spec.py still
    says 2.18.0: the lead bumps DEFAULT_DEV_IMAGE.)"""
    (base,) = of("devenv", "FROM")
    assert DEFAULT_DEV_IMAGE == base


def recorder(tmp_path: Path, name: str) -> Path:
    """A stand-in executable `name` on a PATH directory that prints its arguments as JSON."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\nimport json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    path.chmod(0o755)
    return bin_dir


def run_entrypoint(image: str, args: list[str], bin_dir: Path, **env: str) -> list[str]:
    result = subprocess.run(["sh", str(IMAGES / image / "entrypoint.sh"), *args], capture_output=True, text=True,
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env}, check=True)
    return json.loads(result.stdout)


def test_trainer_entrypoint_runs_the_cloudml_trainer_module(tmp_path):
    bin_dir = recorder(tmp_path, "python")
    assert run_entrypoint("trainer", ["predict", "--input", "x y"], bin_dir) == ["-m", "cloudml_trainer", "predict", "--input", "x y"]


def test_serving_configs_are_the_ones_the_model_service_template_renders():
    assert (IMAGES / "serving" / "monitoring.config").read_text() == monitoring_config()
    assert (IMAGES / "serving" / "batching.config").read_text() == batching_config(BatchingSpec())
    assert [(sources, dest) for sources, dest in copies("serving") if "monitoring.config" in sources] == [
        (["monitoring.config", "batching.config"], CONFIG_DIR + "/")]
    (base,) = of("serving", "FROM")
    assert base == DEFAULT_SERVING_IMAGE


def test_serving_entrypoint_starts_the_server_with_the_templates_flags(tmp_path):
    bin_dir = recorder(tmp_path, "tensorflow_model_server")
    config_dir = tmp_path / "serving"
    config_dir.mkdir()
    (config_dir / "models.config").write_text("model_config_list {}\n")
    flags = run_entrypoint("serving", ["--grpc_max_threads=8"], bin_dir, CLOUDML_SERVING_CONFIG_DIR=str(config_dir),
                           CLOUDML_ENABLE_BATCHING="true")
    expected = [f.replace(CONFIG_DIR, str(config_dir)) for f in server_flags(batching=True)]
    assert sorted(flags[:-1]) == sorted(expected) and flags[-1] == "--grpc_max_threads=8"

    # Without cloudml's model config: one model by name, from the models mount, no batching.
    (config_dir / "models.config").unlink()
    flags = run_entrypoint("serving", [], bin_dir, CLOUDML_SERVING_CONFIG_DIR=str(config_dir), MODEL_NAME="resnet")
    assert "--model_name=resnet" in flags and "--model_base_path=/cloudml/models/resnet" in flags
    assert not any(f.startswith("--enable_batching") for f in flags)
    missing = subprocess.run(["sh", str(IMAGES / "serving" / "entrypoint.sh")], capture_output=True, text=True,
                             env={"PATH": f"{bin_dir}:/usr/bin:/bin", "CLOUDML_SERVING_CONFIG_DIR": str(config_dir)})
    assert missing.returncode != 0 and "set MODEL_NAME" in missing.stderr


class _Section:
    def __init__(self):
        self.values = {}

    def __setattr__(self, key, value):
        if key == "values":
            object.__setattr__(self, key, value)
        else:
            self.values[key] = value


class _Config(dict):
    """Enough of traitlets' Config for `c.Section.option = value`."""

    def __getattr__(self, section):
        return self.setdefault(section, _Section())


def load_jupyter_config(env: dict[str, str]) -> dict[str, dict]:
    config = _Config()
    source = (IMAGES / "devenv" / "jupyter_server_config.py").read_text()
    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(env)
        exec(compile(source, "jupyter_server_config.py", "exec"), {"get_config": lambda: config})
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return {section: s.values for section, s in config.items()}


def test_devenv_idle_shutdown_and_token_match_the_dev_environment_template():
    """The image reads the env names the template sets (its own constants, and present in the
    sample dev environment's rendered container) and applies the template's flags by itself."""
    rendered = {e["name"] for o in sample_objects() for c in containers(o) if o["metadata"]["name"] == "alice"
                for e in c.get("env", [])}
    assert {IDLE_TIMEOUT_ENV, TOKEN_ENV} <= rendered
    config = load_jupyter_config({IDLE_TIMEOUT_ENV: "3600", TOKEN_ENV: "s3cret", "HOME": "/home/cloudml"})
    # Every --Section.option=value the template passes is what the image's config sets by itself.
    for flag in jupyter_command(3600):
        match = re.fullmatch(r"--(\w+)\.(\w+)=(.*)", flag)
        if match:
            section, option, value = match.groups()
            assert str(config[section][option]) == value, flag
    assert config["IdentityProvider"]["token"] == "s3cret"
    assert (config["ServerApp"]["port"], config["ServerApp"]["allow_root"]) == (8888, False)
    # A short timeout: culling checks at least that often.
    assert load_jupyter_config({IDLE_TIMEOUT_ENV: "30", TOKEN_ENV: "t"})["MappingKernelManager"]["cull_interval"] == 30


def test_devenv_refuses_to_start_without_a_token_or_with_a_bad_timeout():
    with pytest.raises(SystemExit, match=f"{TOKEN_ENV} is not set"):
        load_jupyter_config({IDLE_TIMEOUT_ENV: "3600"})
    with pytest.raises(SystemExit, match="positive number of seconds"):
        load_jupyter_config({IDLE_TIMEOUT_ENV: "0", TOKEN_ENV: "t"})
    (copied,) = [dest for sources, dest in copies("devenv") if sources == ["jupyter_server_config.py"]]
    assert copied == "/etc/jupyter/jupyter_server_config.py"  # outside HOME, which a volume covers


def test_devenv_entrypoint_defaults_to_jupyter_lab(tmp_path):
    bin_dir = recorder(tmp_path, "jupyter")
    assert run_entrypoint("devenv", [], bin_dir) == ["lab"]
    assert run_entrypoint("devenv", ["jupyter", "--version"], bin_dir) == ["--version"]


# --- the sample workloads' trainer commands ------------------------------------------------------


def sample_objects() -> list[dict]:
    """Every object the sample team stacks render for their workloads (as `cloudml plan` reads them)."""
    from workload_fixtures import platform_view

    objects = []
    for stack in list_stacks(REPO / "stacks"):
        config = load_stack_file(REPO / "stacks", stack).config
        if "cloudml:team" not in config:
            continue
        spec = load_team(config["cloudml:team"])
        for workload in spec.workloads:
            objects += render(workload.kind, WorkloadContext(spec, workload, platform_view(spec.name)))
    return objects


def containers(obj) -> list[dict]:
    """Every container of every pod template inside a rendered object."""
    found = []
    if isinstance(obj, dict):
        found += [c for c in obj.get("containers", []) if isinstance(c, dict) and "name" in c]
        for value in obj.values():
            found += containers(value)
    elif isinstance(obj, list):
        for value in obj:
            found += containers(value)
    return found


def trainer_invocations() -> list[tuple[str, list[str]]]:
    """(workload, argv after `python -m cloudml_trainer`) of every rendered container running the trainer."""
    found = []
    for obj in sample_objects():
        for container in containers(obj):
            command = container.get("command", []) + container.get("args", [])
            if command[:3] == ["python", "-m", "cloudml_trainer"]:
                found.append((f"{obj['kind']}/{obj['metadata']['name']}/{container['name']}", command[3:]))
            else:
                assert "cloudml_trainer" not in " ".join(command), f"{obj['metadata']['name']}: trainer run as {command}"
    return found


def parse_trainer_argv(argv: list[str]):
    """The trainer's own parsing of a command line (cli.main's command split, then base_parser for
    training or predict.parser): unknown flags and bad values raise SystemExit."""
    from cloudml_trainer import cli, predict

    argv = list(argv)
    command = argv.pop(0) if argv and not argv[0].startswith("-") else "train"
    assert command in cli.COMMANDS, f"unknown trainer command {command!r}"
    return command, (predict.parser() if command == "predict" else cli.base_parser()).parse_args(argv)


def test_every_sample_trainer_command_parses_with_the_trainers_own_parsers(monkeypatch, capsys):
    """Proves the templates and the trainer agree on the command line: every sample workload whose
    container runs `python -m cloudml_trainer` (training, sweep, distributedTraining, batchPrediction)
    passes arguments cloudml_trainer accepts — no unknown flag, no bad value. Task-module options are
    not known here (the teams' modules are not in this repository); the samples use none."""
    for name in ("CLOUDML_MODEL_DIR", "CLOUDML_INPUT", "CLOUDML_OUTPUT", "CLOUDML_MODEL_VERSION"):
        monkeypatch.delenv(name, raising=False)  # predict's required flags then must be on the command line
    invocations = trainer_invocations()
    kinds = {name.split("/")[0] for name, _ in invocations}
    assert kinds == {"Job", "CronJob", "JobSet"} and len(invocations) >= 8  # training, sweep, batch, distributed
    commands = set()
    for name, argv in invocations:
        try:
            command, args = parse_trainer_argv(argv)
        except SystemExit:
            pytest.fail(f"{name}: cloudml_trainer refuses {argv}: {capsys.readouterr().err}")
        commands.add(command)
        if command == "train":
            assert args.module or args.task, f"{name}: no task"
    assert commands == {"train", "predict"}
    # The same check refuses what the trainer would refuse: a misspelt flag, an abbreviation, a bad
    # value, a missing required flag.
    for argv in (["--module", "m", "--learning_rate", "0.1"], ["--module", "m", "--epoch", "3"],
                 ["--module", "m", "--steps", "1e3"]):
        with pytest.raises(SystemExit):
            parse_trainer_argv(argv)
    with pytest.raises(SystemExit):
        parse_trainer_argv(["predict", "--model-dir", "d", "--input", "i"])  # --output missing
