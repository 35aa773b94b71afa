"""Training tasks: the built-in ones by name (`--task NAME`), or a user's module (`--module PKG.MOD`).

A task is a module with these functions (`hp` is the run's hyperparameters: every CLI option as an
attribute — hp.batch_size, hp.learning_rate, hp.steps, ... — plus the sweep trial's parameters and
`--hparam` values, and all of them as the dict `hp.params`):

    build_model(hp) -> keras.Model
        Required. A built model (keras.Input(...) with a name: the input names become the
        serving signature's inputs). Called inside the strategy's scope.
    train_dataset(hp, input_context) -> tf.data.Dataset
        Required. Infinite (repeated) batches of (features, labels), each of
        input_context.get_per_replica_batch_size(hp.batch_size) examples; shard or seed by
        input_context.input_pipeline_id so workers read different data.
    eval_dataset(hp) -> tf.data.Dataset
        Required. Finite batches of (features, labels) for the metrics.
    loss(labels, predictions) -> Tensor
        Optional. Per-example loss; default binary cross-entropy of probabilities.
    metrics(labels, predictions) -> dict[str, float]
        Optional. NumPy arrays in, floats out; default accuracy, auc, log_loss (binary).
    add_arguments(parser)
        Optional. The task's own command-line options (argparse).
    steps_per_epoch(hp) -> int
        Optional. Needed for --epochs.
    serving_outputs(model, inputs) -> dict[str, Tensor]
        Optional. What serving_default returns; default {"predictions": model(inputs)}.
"""

from __future__ import annotations

import importlib
from types import ModuleType

BUILT_IN = {"reference": "cloudml_trainer.tasks.reference"}
REQUIRED = ("build_model", "train_dataset", "eval_dataset")


class TaskError(ValueError):
    pass


def load_task(task: str | None, module: str | None) -> ModuleType:
    if module:
        name = module
    elif task in BUILT_IN:
        name = BUILT_IN[task]
    else:
        raise TaskError(
            f"unknown task {task!r}: built-in tasks are {sorted(BUILT_IN)}; "
            "run your own with --module your_package.your_module"
        )
    try:
        loaded = importlib.import_module(name)
    except ImportError as error:
        raise TaskError(f"cannot import task module {name!r}: {error}") from None
    missing = [f for f in REQUIRED if not callable(getattr(loaded, f, None))]
    if missing:
        raise TaskError(f"task module {name!r} lacks {missing} (see cloudml_trainer.tasks)")
    return loaded
