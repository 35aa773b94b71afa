"""Command line: `python -m cloudml_trainer [train] ...` and `python -m cloudml_trainer predict ...`.

Hyperparameters: every option below (and the task's own, from its `add_arguments`), then
`--hparam KEY=VALUE` (VALUE read as JSON when it parses, else a string), then the sweep trial's
parameters from the JSON file named by CLOUDML_TRIAL_PARAMS — later sources win, so a sweep's
`learning_rate` replaces the command's `--learning-rate`. Keys use underscores (`batch_size`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from types import SimpleNamespace

from cloudml_trainer.tasks import TaskError, load_task

COMMANDS = ("train", "predict")


def base_parser(add_help: bool = True) -> argparse.ArgumentParser:
    # No abbreviations: `--epoch` is an unknown flag, not `--epochs` (and a task option added later
    # cannot make a command that used to work ambiguous).
    p = argparse.ArgumentParser(prog="python -m cloudml_trainer [train]", add_help=add_help, allow_abbrev=False,
                                description="Train a task under the strategy TF_CONFIG calls for.")
    p.add_argument("--task", default=None, help="Built-in task (default: reference).")
    p.add_argument("--module", default=None, help="Your task module (importable), e.g. my_pkg.task.")
    p.add_argument("--steps", type=int, default=None, help="Train until this global step (default 1000).")
    p.add_argument("--epochs", type=int, default=None, help="Train epochs x the task's steps_per_epoch steps.")
    p.add_argument("--batch-size", type=int, default=64, help="Global batch size (per worker step under parameterServer).")
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--checkpoint-every", type=int, default=100, help="Save a checkpoint every N steps.")
    p.add_argument("--keep-checkpoints", type=int, default=3)
    p.add_argument("--log-every", type=int, default=50, help="TensorBoard loss summary every N steps.")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE", help="Extra hyperparameter (repeatable).")
    p.add_argument("--checkpoint-dir", default=None, help="Default: $CLOUDML_CHECKPOINT_DIR.")
    p.add_argument("--log-dir", default=None, help="Default: $CLOUDML_LOG_DIR.")
    p.add_argument("--model-dir", default=None, help="Export here (<dir>/<version>/). Default: $CLOUDML_MODEL_DIR.")
    p.add_argument("--model-version", type=int, default=None, help="Export version (default: unix seconds).")
    p.add_argument("--metrics-file", default=None, help="Default: $CLOUDML_METRICS_DIR/$CLOUDML_TRIAL_INDEX.json.")
    p.add_argument("--evaluator-poll-seconds", type=float, default=10.0)
    p.add_argument("--evaluator-timeout", type=float, default=3600.0, help="Evaluator gives up after this long without a new checkpoint.")
    return p


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_hparams(argv: list[str], environ=None) -> tuple[SimpleNamespace, object]:
    """(hyperparameters, task module) from the command line and the environment."""
    environ = os.environ if environ is None else environ
    first, _ = base_parser(add_help=False).parse_known_args(argv)
    task = load_task(first.task or (None if first.module else "reference"), first.module)
    parser = base_parser()
    if hasattr(task, "add_arguments"):
        group = parser.add_argument_group("task options")
        task.add_arguments(group)
    args = parser.parse_args(argv)
    params = vars(args).copy()
    for item in args.hparam:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--hparam {item!r}: expected KEY=VALUE")
        params[key.replace("-", "_")] = _value(value)
    trial: dict = {}
    trial_file = environ.get("CLOUDML_TRIAL_PARAMS")
    if trial_file:
        with open(trial_file) as f:
            trial = json.load(f)
        if not isinstance(trial, dict):
            parser.error(f"{trial_file}: the trial's parameters must be a JSON object")
        params.update({k.replace("-", "_"): v for k, v in trial.items()})
    params.pop("hparam")
    if params["steps"] is None:
        if params["epochs"] is not None:
            if not hasattr(task, "steps_per_epoch"):
                parser.error("--epochs needs a task with steps_per_epoch(hp); give --steps")
            params["steps"] = params["epochs"] * task.steps_per_epoch(SimpleNamespace(**params))
        else:
            params["steps"] = 1000
    for key in ("steps", "batch_size", "checkpoint_every", "log_every", "keep_checkpoints"):
        if not isinstance(params[key], int) or params[key] < 1:
            parser.error(f"{key} must be a positive integer, got {params[key]!r}")
    hp = SimpleNamespace(**params)
    hp.params = dict(params)
    hp.trial = trial
    return hp, task


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "train"
    if argv and not argv[0].startswith("-"):
        command = argv.pop(0)
        if command not in COMMANDS:
            print(f"cloudml_trainer: unknown command {command!r}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
            return 2
    if command == "predict":
        from cloudml_trainer.predict import main as predict_main

        return predict_main(argv)
    from cloudml_trainer.cluster import ClusterError, role_from_env

    try:
        role = role_from_env()
        hp, task = parse_hparams(argv)
    except (TaskError, ClusterError) as error:
        print(f"cloudml_trainer: {error}", file=sys.stderr)
        return 2
    from cloudml_trainer.devices import DEVICE_EXIT_CODE, DeviceError, gpu_report

    try:
        if role.runs_server_only:
            from cloudml_trainer.cluster import serve_forever
            from cloudml_trainer.training import emit

            emit("server", role=role.name, **gpu_report())
            serve_forever(role)
            return 0
        from cloudml_trainer.training import run

        run(hp, task, role)
    except DeviceError as error:
        print(f"cloudml_trainer: {error}", file=sys.stderr, flush=True)
        return DEVICE_EXIT_CODE
    return 0
