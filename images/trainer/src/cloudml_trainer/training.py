"""The training run: a custom training loop under the strategy TF_CONFIG calls for, with
checkpoint/resume, TensorBoard summaries, evaluation metrics and the SavedModel export.

Why a custom loop and not `model.fit`: with Keras 3, `fit` under MultiWorkerMirroredStrategy fails
("Attempt to convert a value (PerReplica...)"); `strategy.run` over a distributed dataset works the
same way under the default, Mirrored, MultiWorkerMirrored and ParameterServer strategies.

Resume: the global step is a tf.Variable inside the checkpoint, and checkpoints are numbered by it
(`ckpt-<step>`). At start every task restores the chief's latest checkpoint, so after a restart of
the whole group (what the JobSet does when a pod fails) training continues from the saved step.
Under MultiWorkerMirroredStrategy every worker saves (saving is collective), but only the chief
into the checkpoint directory; the others into a temporary directory they delete.

Export once per run: a restart after the export (the chief died before exiting) resumes at the
target step and must neither fail nor add a second version. The chief records the version it is
about to export in the run's checkpoint directory (EXPORT_MARKER, written before the export), so a
restart reuses that version and skips the export when its saved_model.pb is already there.

Temporary directories (S3 staging, non-chief checkpoints and exports) are removed when the run ends,
also when it fails; a killed process leaves them behind, inside the pod's own file system.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudml_trainer import storage
from cloudml_trainer.cluster import EVALUATOR, PARAMETER_SERVER, Role, make_strategy
from cloudml_trainer.devices import gpu_report
from cloudml_trainer.metrics import binary_classification

STATUS_PREFIX = "CLOUDML_STATUS "
EXPORT_MARKER = "cloudml-export.json"  # in the run's checkpoint directory: the version this run exports
EVALUATOR_LOG_SUBDIR = "evaluator"  # the evaluator's summaries and metrics.json, apart from the chief's


def emit(event: str, **fields: Any) -> None:
    """One machine-readable status line on stdout (also what the tests read)."""
    print(STATUS_PREFIX + json.dumps({"event": event, **fields}, sort_keys=True, default=str), flush=True)


@dataclass
class RunDirs:
    checkpoint: str
    logs: str | None
    model: str | None
    metrics_file: str | None
    temporary_checkpoint: bool = False  # no checkpoint directory given: a temporary one, deleted at the end

    @classmethod
    def from_env(cls, hp, environ=None) -> "RunDirs":
        environ = os.environ if environ is None else environ
        checkpoint = hp.checkpoint_dir or environ.get("CLOUDML_CHECKPOINT_DIR")
        temporary = not checkpoint
        if temporary:
            checkpoint = tempfile.mkdtemp(prefix="cloudml-checkpoints-")
            print(f"cloudml_trainer: no CLOUDML_CHECKPOINT_DIR, checkpoints go to {checkpoint} (deleted at the end; no resume)",
                  flush=True)
        metrics_file = hp.metrics_file
        if not metrics_file and environ.get("CLOUDML_METRICS_DIR"):
            index = environ.get("CLOUDML_TRIAL_INDEX") or "0"
            metrics_file = storage.join(environ["CLOUDML_METRICS_DIR"], f"{index}.json")
        return cls(checkpoint, hp.log_dir or environ.get("CLOUDML_LOG_DIR") or None,
                   hp.model_dir or environ.get("CLOUDML_MODEL_DIR") or None, metrics_file, temporary)


def default_loss(labels, predictions):
    import keras

    return keras.losses.binary_crossentropy(labels, predictions)


def make_optimizer(hp):
    import keras

    if hp.optimizer == "sgd":
        return keras.optimizers.SGD(hp.learning_rate, momentum=0.9)
    return keras.optimizers.Adam(hp.learning_rate)


def run(hp, task, role: Role, devices: list[str] | None = None) -> dict:
    """Train (or evaluate, for the evaluator) as `role`. `devices`: local training only, the
    logical devices to mirror over (default: every GPU). Raises devices.DeviceError before any work
    when the pod's GPUs are invisible to TensorFlow."""
    gpus = gpu_report()
    dirs = RunDirs.from_env(hp)
    try:
        if role.mode == EVALUATOR:
            return evaluate_checkpoints(hp, task, dirs, gpus)
        return _train(hp, task, role, dirs, parameter_server=role.mode == PARAMETER_SERVER, gpus=gpus, devices=devices)
    finally:
        if dirs.temporary_checkpoint:
            shutil.rmtree(dirs.checkpoint, ignore_errors=True)


def _train(hp, task, role: Role, dirs: RunDirs, parameter_server: bool, gpus: dict | None = None,
           devices: list[str] | None = None) -> dict:
    import tensorflow as tf

    strategy = make_strategy(role, devices)
    loss_fn = getattr(task, "loss", None) or default_loss
    with strategy.scope():
        model = task.build_model(hp)
        optimizer = make_optimizer(hp)
        optimizer.build(model.trainable_variables)
        step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)

    # Every task restores the chief's latest checkpoint; only the chief saves into that directory.
    checkpoints = storage.CheckpointDir(dirs.checkpoint, "checkpoints")
    logs = storage.RunDir(dirs.logs, "logs") if role.is_chief and dirs.logs else None
    save_dir = checkpoints.local if role.is_chief else tempfile.mkdtemp(prefix="cloudml-worker-checkpoints-")
    try:
        checkpoints.pull()
        latest = tf.train.latest_checkpoint(checkpoints.local)
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
        manager = tf.train.CheckpointManager(checkpoint, save_dir, max_to_keep=hp.keep_checkpoints)
        writer = tf.summary.create_file_writer(os.path.join(logs.local, "train")) if logs else tf.summary.create_noop_writer()

        start, target = int(step.numpy()), hp.steps
        emit("start", role=role.name, step=start, target=target, strategy=type(strategy).__name__,
             replicas=strategy.num_replicas_in_sync, restored=os.path.basename(latest) if latest else None, **(gpus or {}))

        if parameter_server:
            run_steps = _parameter_server_loop(hp, task, strategy, model, optimizer, step, loss_fn)
        else:
            run_steps = _synchronous_loop(hp, task, strategy, model, optimizer, step, loss_fn)

        def save(current: int) -> None:
            path = manager.save(checkpoint_number=current)
            if role.is_chief:
                kept = [os.path.basename(p) for p in manager.checkpoints]
                checkpoints.push_checkpoint(os.path.basename(path), kept)
                if logs:
                    writer.flush()
                    logs.push()
            emit("checkpoint", role=role.name, step=current)

        current = start
        began = time.monotonic()
        while current < target:
            boundary = min(target, _next_multiple(current, hp.checkpoint_every), _next_multiple(current, hp.log_every))
            loss = run_steps(boundary - current)
            current = int(step.numpy())
            with writer.as_default():
                tf.summary.scalar("loss", loss, step=current)
            if current % hp.log_every == 0 or current == target:
                print(f"cloudml_trainer: {role.name} step {current}/{target} loss {loss:.4f}", flush=True)
            if current % hp.checkpoint_every == 0 and current != target:
                save(current)
        if current == target and (not latest or int(os.path.basename(latest).rsplit("-", 1)[1]) != target):
            save(current)
        elapsed = time.monotonic() - began

        # Evaluation and export use a local copy of the trained weights: no distributed variables, so
        # the same code serves every strategy, and the SavedModel holds plain variables.
        trained = task.build_model(hp)
        trained.set_weights(model.get_weights())
        summary: dict = {"role": role.name, "start_step": start, "step": current, "seconds": round(elapsed, 3)}
        if role.is_chief:
            metrics = evaluate(hp, task, trained, current)
            if getattr(hp, "trial", None):
                metrics["trial_params"] = hp.trial  # the sweep compares trials by these
            write_metrics(metrics, dirs, logs, current)
            summary["metrics"] = metrics
        if dirs.model:
            summary["export"] = export(hp, task, trained, dirs.model if role.is_chief else None,
                                       marker_uri=storage.join(dirs.checkpoint, EXPORT_MARKER), step=current)
        if logs:
            writer.close()
            logs.push()
        emit("done", **summary)
        return summary
    finally:
        if not role.is_chief:
            shutil.rmtree(save_dir, ignore_errors=True)
        if logs:
            logs.cleanup()
        checkpoints.cleanup()


def _next_multiple(value: int, every: int) -> int:
    return (value // every + 1) * every


def _replica_step(hp, model, optimizer, loss_fn, global_batch: int):
    import tensorflow as tf

    def step_fn(features, labels):
        with tf.GradientTape() as tape:
            predictions = model(features, training=True)
            loss = tf.nn.compute_average_loss(loss_fn(labels, predictions), global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return step_fn


def _synchronous_loop(hp, task, strategy, model, optimizer, step, loss_fn):
    """Default / Mirrored / MultiWorkerMirrored: n steps per tf.function call (few Python round trips)."""
    import tensorflow as tf

    dataset = strategy.distribute_datasets_from_function(lambda context: task.train_dataset(hp, context))
    iterator = iter(dataset)
    replica_step = _replica_step(hp, model, optimizer, loss_fn, hp.batch_size)

    @tf.function
    def train_steps(n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            features, labels = next(iterator)
            per_replica = strategy.run(replica_step, args=(features, labels))
            total += strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
            step.assign_add(1)
        return total / tf.cast(n, tf.float32)

    return lambda n: float(train_steps(tf.constant(n, dtype=tf.int64)))


def _parameter_server_loop(hp, task, strategy, model, optimizer, step, loss_fn):
    """ParameterServerStrategy: the chief schedules one function per step on the workers
    (asynchronous training; each worker step uses hp.batch_size examples) and joins at boundaries."""
    import tensorflow as tf

    coordinator = tf.distribute.coordinator.ClusterCoordinator(strategy)

    @tf.function
    def per_worker_dataset():
        return strategy.distribute_datasets_from_function(lambda context: task.train_dataset(hp, context))

    iterator = iter(coordinator.create_per_worker_dataset(per_worker_dataset))
    replica_step = _replica_step(hp, model, optimizer, loss_fn, hp.batch_size)

    @tf.function
    def worker_step(iterator):
        features, labels = next(iterator)
        loss = strategy.run(replica_step, args=(features, labels))
        step.assign_add(1)
        return loss

    def run_steps(n: int) -> float:
        results = [coordinator.schedule(worker_step, args=(iterator,)) for _ in range(n)]
        coordinator.join()
        return float(results[-1].fetch())

    return run_steps


# --- evaluation ----------------------------------------------------------------------------------


def evaluate(hp, task, model, step: int) -> dict:
    """The task's metrics over its eval dataset, with the loss (mean per-example loss)."""
    import numpy as np

    loss_fn = getattr(task, "loss", None) or default_loss
    labels, predictions, losses = [], [], []
    for features, batch_labels in task.eval_dataset(hp):
        batch_predictions = model(features, training=False)
        losses.append(np.asarray(loss_fn(batch_labels, batch_predictions)).reshape(-1))
        labels.append(np.asarray(batch_labels))
        predictions.append(np.asarray(batch_predictions))
    labels, predictions = np.concatenate(labels), np.concatenate(predictions)
    metric_fn = getattr(task, "metrics", None) or binary_classification
    metrics = {"loss": float(np.mean(np.concatenate(losses))), **metric_fn(labels, predictions)}
    return {"step": step, "examples": int(len(labels)),
            **{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}}


def write_metrics(metrics: dict, dirs: RunDirs, logs, step: int) -> dict:
    import tensorflow as tf

    record = dict(metrics)
    if logs is not None:
        writer = tf.summary.create_file_writer(os.path.join(logs.local, "eval"))
        with writer.as_default():
            for key, value in metrics.items():
                if key not in ("step", "examples") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    tf.summary.scalar(key, value, step=step)
        writer.close()
        Path(logs.local, "metrics.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    if dirs.metrics_file:
        storage.write_text(dirs.metrics_file, json.dumps(record, sort_keys=True))
    emit("metrics", **record)
    return record


def evaluate_checkpoints(hp, task, dirs: RunDirs, gpus: dict | None = None) -> dict:
    """The evaluator sidecar: evaluate each new checkpoint of the run as it appears, until the one
    at the target step (or no new checkpoint for hp.evaluator_timeout seconds). Its summaries and
    metrics.json go to <log dir>/evaluator/, so they never overwrite the chief's."""
    import tensorflow as tf

    model = task.build_model(hp)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    checkpoint = tf.train.Checkpoint(model=model, step=step)
    checkpoints = storage.CheckpointDir(dirs.checkpoint, "checkpoints")
    logs = storage.RunDir(storage.join(dirs.logs, EVALUATOR_LOG_SUBDIR), "logs") if dirs.logs else None
    try:
        return _evaluate_loop(hp, task, dirs, model, step, checkpoint, checkpoints, logs, gpus or {})
    finally:
        if logs:
            logs.cleanup()
        checkpoints.cleanup()


def _evaluate_loop(hp, task, dirs: RunDirs, model, step, checkpoint, checkpoints, logs, gpus: dict) -> dict:
    import tensorflow as tf

    emit("start", role="evaluator", step=0, target=hp.steps, **gpus)
    evaluated, last_new = None, time.monotonic()
    metrics: dict = {}
    while True:
        checkpoints.pull()
        latest = tf.train.latest_checkpoint(checkpoints.local)
        if latest and latest != evaluated:
            try:
                checkpoint.restore(latest).expect_partial()
            except (tf.errors.NotFoundError, tf.errors.DataLossError):
                time.sleep(1)  # deleted or half-written under us: the next one is coming
                continue
            evaluated, last_new = latest, time.monotonic()
            current = int(step.numpy())
            metrics = evaluate(hp, task, model, current)
            eval_dirs = RunDirs(dirs.checkpoint, dirs.logs, None, None)
            write_metrics(metrics, eval_dirs, logs, current)
            if logs:
                logs.push()
            if current >= hp.steps:
                break
        elif time.monotonic() - last_new > hp.evaluator_timeout:
            emit("timeout", role="evaluator", seconds=hp.evaluator_timeout)
            break
        else:
            time.sleep(hp.evaluator_poll_seconds)
    if dirs.metrics_file and metrics:
        storage.write_text(dirs.metrics_file, json.dumps(metrics, sort_keys=True))
    emit("done", role="evaluator", **({"step": metrics.get("step")} if metrics else {}))
    return metrics


# --- export --------------------------------------------------------------------------------------

SAVED_MODEL_FILE = "saved_model.pb"


def serving_function(task, model):
    """serving_default: named inputs as the model declares them, a dict of named outputs."""
    import tensorflow as tf

    inputs = {t.name.split(":")[0]: tf.TensorSpec(t.shape, t.dtype, name=t.name.split(":")[0]) for t in _model_inputs(model)}
    outputs_fn = getattr(task, "serving_outputs", None)
    single = len(inputs) == 1

    def serve(**features):
        x = next(iter(features.values())) if single else features
        if outputs_fn is not None:
            return outputs_fn(model, x)
        result = model(x, training=False)
        return result if isinstance(result, dict) else {"predictions": result}

    return tf.function(serve).get_concrete_function(**inputs)


def _model_inputs(model):
    inputs = model.inputs
    if isinstance(inputs, dict):
        inputs = list(inputs.values())
    names = [getattr(i, "name", None) for i in inputs]
    if any(not n for n in names):
        raise ValueError("the task's model needs named keras.Input(...) tensors: they name the serving inputs")
    return inputs


def next_version(model_uri: str, requested: int | None) -> int:
    """The requested version, else unix seconds (bumped past any existing version directory):
    TF Serving serves the highest integer directory."""
    if requested is not None:
        return requested
    existing = {int(n) for n in storage.list_children(model_uri) if n.isdigit()}
    version = int(time.time())
    while version in existing:
        version += 1
    return version


def export_version(model_uri: str, requested: int | None, marker_uri: str | None, step: int | None) -> tuple[int, bool]:
    """(version, chosen earlier by this run). The run's marker (in its checkpoint directory) names
    the version this run exports at this step; a restart at the same step reuses it. A new choice is
    recorded before anything is exported, so a crash at any point leads back to the same version."""
    marker = None
    if marker_uri:
        try:
            marker = json.loads(storage.read_text(marker_uri) or "null")
        except json.JSONDecodeError:
            marker = None
    if (isinstance(marker, dict) and marker.get("step") == step and marker.get("model_dir") == model_uri
            and isinstance(marker.get("version"), int) and requested in (None, marker["version"])):
        return marker["version"], True
    version = next_version(model_uri, requested)
    if marker_uri:
        storage.write_text(marker_uri, json.dumps({"model_dir": model_uri, "step": step, "version": version}, sort_keys=True))
    return version, False


def export(hp, task, model, model_uri: str | None, marker_uri: str | None = None, step: int | None = None) -> dict:
    """Write the SavedModel, once per run. The chief passes the model directory and gets
    `<dir>/<version>/`; other workers pass None and write to a temporary directory they delete.
    A version that already holds saved_model.pb is never written again: skipped, and said so."""
    import tensorflow as tf

    if model_uri is None:
        module = tf.Module()
        module.model = model
        scratch = tempfile.mkdtemp(prefix="cloudml-export-")
        try:
            tf.saved_model.save(module, scratch, signatures={"serving_default": serving_function(task, model)})
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"version": None, "path": None}
    version, ours = export_version(model_uri, hp.model_version, marker_uri, step)
    path = storage.join(model_uri, str(version))
    present = storage.list_children(path)
    if SAVED_MODEL_FILE in present and not ours:
        # Another run's model: never overwritten, and never reported as this run's export.
        raise FileExistsError(f"model version {version} at {path} was exported by another run; "
                              "choose another --model-version, or leave it out to take the next free version")
    if SAVED_MODEL_FILE in present:
        print(f"cloudml_trainer: model version {version} at {path}: this run already exported it "
              "(restarted after the export); not exporting again", flush=True)
        emit("export", version=version, path=path, skipped=True)
        return {"version": version, "path": path, "skipped": True}
    if present and not storage.is_s3(model_uri):
        # A local version directory only appears by rename, complete; this one is something else.
        raise FileExistsError(f"model version {version} in {model_uri} exists without {SAVED_MODEL_FILE}")
    # (On S3, a version without saved_model.pb is an upload cut short — saved_model.pb goes last — and
    # TF Serving never loaded it: upload again over it.)
    module = tf.Module()
    module.model = model
    signature = serving_function(task, model)
    if storage.is_s3(model_uri):
        staging = tempfile.mkdtemp(prefix="cloudml-export-")
        try:
            tf.saved_model.save(module, staging, signatures={"serving_default": signature})
            storage.upload(staging, path, last=[SAVED_MODEL_FILE])
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    else:
        os.makedirs(model_uri, exist_ok=True)
        # Written beside, then renamed: TF Serving skips non-integer names, so it never loads half a model.
        staging = os.path.join(model_uri, f".tmp-{version}-{os.getpid()}")
        try:
            tf.saved_model.save(module, staging, signatures={"serving_default": signature})
            os.rename(staging, path)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    emit("export", version=version, path=path)
    return {"version": version, "path": path}
