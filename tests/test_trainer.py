"""The trainer image's program (images/trainer: cloudml_trainer) run in-process with real TensorFlow
on CPU: the reference task converges, exports a SavedModel that answers a TF-Serving-style
`{"instances": [...]}` request through `serving_default`, resumes from its checkpoint with the step
counter continuing, takes a sweep trial's parameters and writes its metrics where the sweep reads
them (with the env the sample sweep renders), predicts one output per input record (also with the
rendered batchPrediction command against S3 in moto), runs a user's task module, exports once per run
across restarts, refuses to train on the CPU when the pod's GPUs are invisible, keeps the evaluator's
logs apart from the chief's and leaves no temporary directory behind. Multi-process runs are in
test_trainer_distributed.py.

cloudml_trainer is not a package of the cloudml project (it lives in the image), so this module
puts images/trainer/src on sys.path itself: no install step, and the tests always run the source
in the tree.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TRAINER_SRC = REPO / "images" / "trainer" / "src"
if str(TRAINER_SRC) not in sys.path:
    sys.path.insert(0, str(TRAINER_SRC))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cloudml_trainer import cli, devices, metrics, storage, training  # noqa: E402
from cloudml_trainer.cluster import EVALUATOR, LOCAL, MULTI_WORKER, PARAMETER_SERVER, ClusterError, role_from_config  # noqa: E402
from cloudml_trainer.tasks import reference  # noqa: E402
from cloudml_trainer.training import STATUS_PREFIX  # noqa: E402

RUN_ENV = ("TF_CONFIG", "CLOUDML_CHECKPOINT_DIR", "CLOUDML_LOG_DIR", "CLOUDML_MODEL_DIR", "CLOUDML_METRICS_DIR",
           "CLOUDML_TRIAL_INDEX", "CLOUDML_TRIAL_PARAMS", "CLOUDML_MODEL_VERSION", "CLOUDML_INPUT", "CLOUDML_OUTPUT",
           devices.VISIBLE_DEVICES_ENV, devices.ALLOW_CPU_FALLBACK_ENV)
# The reference task reaches ~0.10 log loss and ~96% accuracy in 300 steps; these bounds leave room
# for numeric noise while still failing a model that did not learn (chance: 0.69 log loss, 50%).
CONVERGED_LOSS = 0.25
CONVERGED_ACCURACY = 0.9


def run_dirs(root: Path) -> dict[str, str]:
    return {"CLOUDML_CHECKPOINT_DIR": str(root / "checkpoints"), "CLOUDML_LOG_DIR": str(root / "logs"),
            "CLOUDML_MODEL_DIR": str(root / "models" / "reference")}


def clean_env(mp: pytest.MonkeyPatch, **env: str) -> None:
    for name in RUN_ENV:
        mp.delenv(name, raising=False)
    for name, value in env.items():
        mp.setenv(name, value)


def statuses(text: str) -> list[dict]:
    """The trainer's CLOUDML_STATUS lines, parsed."""
    return [json.loads(line[len(STATUS_PREFIX):]) for line in text.splitlines() if line.startswith(STATUS_PREFIX)]


def event(text: str, name: str) -> dict:
    (found,) = [s for s in statuses(text) if s["event"] == name]
    return found


def versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.name.isdigit())


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One 300-step run of the reference task, as a single-pod training Job would run it."""
    root = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        clean_env(mp, **run_dirs(root))
        assert cli.main(["--task", "reference", "--steps", "300", "--checkpoint-every", "100"]) == 0
    return root


# --- TF_CONFIG -> role ---------------------------------------------------------------------------

CLUSTER_MW = {"worker": ["w0:2222", "w1:2222"]}
CLUSTER_PS = {"chief": ["c:2222"], "ps": ["p:2222"], "worker": ["w0:2222", "w1:2222"]}


@pytest.mark.parametrize("config, mode, chief", [
    ({}, LOCAL, True),
    ({"cluster": {"worker": ["w0:2222"]}, "task": {"type": "worker", "index": 0}}, LOCAL, True),
    ({"cluster": CLUSTER_MW, "task": {"type": "worker", "index": 0}}, MULTI_WORKER, True),
    ({"cluster": CLUSTER_MW, "task": {"type": "worker", "index": 1}}, MULTI_WORKER, False),
    ({"cluster": {"chief": ["c:2222"], **CLUSTER_MW}, "task": {"type": "worker", "index": 0}}, MULTI_WORKER, False),
    ({"cluster": {"chief": ["c:2222"], **CLUSTER_MW}, "task": {"type": "chief", "index": 0}}, MULTI_WORKER, True),
    ({"cluster": CLUSTER_MW, "task": {"type": "evaluator", "index": 0}}, EVALUATOR, False),
    ({"cluster": CLUSTER_PS, "task": {"type": "chief", "index": 0}}, PARAMETER_SERVER, True),
    ({"cluster": CLUSTER_PS, "task": {"type": "ps", "index": 0}}, PARAMETER_SERVER, False),
])
def test_tf_config_picks_the_strategy_and_the_chief_by_tensorflows_rules(config, mode, chief):
    role = role_from_config(config)
    assert (role.mode, role.is_chief) == (mode, chief)
    assert role.runs_server_only == (mode == PARAMETER_SERVER and config["task"]["type"] != "chief")


@pytest.mark.parametrize("config, message", [
    ({"cluster": {"master": ["m:2222"]}, "task": {"type": "master", "index": 0}}, "'master' is TF1 only"),
    ({"cluster": {"ps": ["p:1"], "worker": ["w:1"]}, "task": {"type": "worker", "index": 0}}, "needs a chief"),
    ({"cluster": CLUSTER_MW, "task": {"type": "worker", "index": 2}}, "not in the cluster"),
    ({"cluster": CLUSTER_MW, "task": {"type": "worker", "index": "$(CLOUDML_TASK_INDEX)"}}, "not a non-negative integer"),
])
def test_tf_config_tensorflow_would_refuse_is_refused_with_the_reason(config, message):
    with pytest.raises(ClusterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        role_from_config(config)


# --- metrics -------------------------------------------------------------------------------------


def test_metrics_follow_their_definitions():
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # Pairs (pos, neg): 0.35>0.1 yes, 0.35>0.4 no, 0.8>both yes -> 3 of 4.
    assert metrics.auc(labels, scores) == 0.75
    assert metrics.auc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    assert metrics.accuracy(labels, scores) == 0.75
    expected = -np.mean(np.log([0.9, 0.6, 0.35, 0.8]))
    assert metrics.log_loss(labels, scores) == pytest.approx(expected)


# --- single-process training ---------------------------------------------------------------------


def test_reference_task_converges_and_exports_a_savedmodel_tf_serving_can_answer(trained):
    result = json.loads((trained / "logs" / "metrics.json").read_text())
    assert result["step"] == 300
    assert result["loss"] < CONVERGED_LOSS and result["log_loss"] < CONVERGED_LOSS
    assert result["accuracy"] > CONVERGED_ACCURACY and result["auc"] > 0.95

    # TF Serving's layout: <model_base_path>/<integer version>/saved_model.pb + variables/.
    model_dir = trained / "models" / "reference"
    (version,) = versions(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == [str(version)]  # no staging directory left
    assert (model_dir / str(version) / "saved_model.pb").is_file()
    assert any((model_dir / str(version) / "variables").glob("variables.data-*"))

    signature = tf.saved_model.load(str(model_dir / str(version))).signatures["serving_default"]
    assert {k: (v.dtype, v.shape.as_list()) for k, v in signature.structured_input_signature[1].items()} == {
        "features": (tf.float32, [None, 8])}
    # A REST predict request, converted to tensors the way TF Serving does for a one-input
    # signature in row format: the list of instances becomes the batch of that input.
    features, labels = reference.examples(32, seed=5)
    request = json.loads(json.dumps({"instances": features.tolist()}))
    outputs = signature(features=tf.constant(request["instances"], dtype=tf.float32))
    predictions = outputs["predictions"].numpy()
    assert list(outputs) == ["predictions"] and predictions.shape == (32, 1)
    assert ((predictions >= 0) & (predictions <= 1)).all()  # probabilities (float32 sigmoid may round to 1.0)
    assert ((predictions >= 0.5) == (labels >= 0.5)).mean() >= 0.85
    # The same request twice gives the same answer (inference mode, no dropout or batch statistics).
    assert np.array_equal(signature(features=tf.constant(request["instances"]))["predictions"].numpy(), predictions)


def test_training_writes_tensorboard_logs_and_step_numbered_checkpoints(trained):
    assert list((trained / "logs" / "train").glob("events.out.tfevents.*"))
    assert list((trained / "logs" / "eval").glob("events.out.tfevents.*"))
    index = (trained / "checkpoints" / "checkpoint").read_text()
    assert storage.checkpoint_names(index) == ("ckpt-300", ["ckpt-100", "ckpt-200", "ckpt-300"])
    assert storage.latest_checkpoint_step(str(trained / "checkpoints")) == 300


def test_a_restarted_run_resumes_from_the_latest_checkpoint_and_the_step_continues(tmp_path, monkeypatch, capsys):
    clean_env(monkeypatch, **run_dirs(tmp_path))
    assert cli.main(["--steps", "120", "--checkpoint-every", "50"]) == 0
    first = capsys.readouterr().out
    assert event(first, "start")["step"] == 0 and event(first, "done")["step"] == 120
    assert storage.latest_checkpoint_step(str(tmp_path / "checkpoints")) == 120

    # The pod restarts (same run directories) with the full target: training continues at 120.
    assert cli.main(["--steps", "200", "--checkpoint-every", "50"]) == 0
    second = capsys.readouterr().out
    assert (event(second, "start")["step"], event(second, "start")["restored"]) == (120, "ckpt-120")
    assert [s["step"] for s in statuses(second) if s["event"] == "checkpoint"] == [150, 200]
    assert event(second, "done")["step"] == 200
    assert len(versions(tmp_path / "models" / "reference")) == 2  # each completed run exports a new version


@pytest.mark.parametrize("model_version", [7, None], ids=["model-version", "auto-version"])
def test_a_restart_after_the_export_resumes_at_the_target_and_exports_exactly_once(model_version, tmp_path, monkeypatch, capsys):
    """The chief exported, then died before exiting; the restarted pod (same command, same run
    directories) resumes at the target step. Proves: it completes (no FileExistsError for its own
    --model-version; another run's version is refused), the model directory still holds exactly the first attempt's version, untouched
    (no duplicate auto version), and the skip is reported. Auto version: a crash after the version
    was chosen but before the export finished makes the restart export that same version."""
    clean_env(monkeypatch, **run_dirs(tmp_path))
    args = ["--steps", "20", "--checkpoint-every", "10", "--log-every", "10"]
    args += [] if model_version is None else ["--model-version", str(model_version)]
    model_dir = tmp_path / "models" / "reference"
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    (version,) = versions(model_dir)
    assert model_version in (None, version) and event(first, "export") == {
        "event": "export", "version": version, "path": str(model_dir / str(version))}
    saved_model = model_dir / str(version) / training.SAVED_MODEL_FILE
    written = saved_model.stat().st_mtime_ns
    marker = tmp_path / "checkpoints" / training.EXPORT_MARKER
    assert json.loads(marker.read_text())["version"] == version
    assert cli.main(args) == 0  # the restart
    second = capsys.readouterr().out
    assert (event(second, "start")["step"], event(second, "start")["restored"]) == (20, "ckpt-20")
    assert event(second, "done")["export"] == {"version": version, "path": str(model_dir / str(version)), "skipped": True}
    assert f"model version {version} at {model_dir / str(version)}: " in second
    assert versions(model_dir) == [version] and saved_model.stat().st_mtime_ns == written
    if model_version is not None:
        # Without this run's marker the version is another run's: refused, neither overwritten nor claimed.
        marker.unlink()
        with pytest.raises(FileExistsError, match=f"model version {version} at .* was exported by another run"):
            cli.main(args)
        assert versions(model_dir) == [version] and saved_model.stat().st_mtime_ns == written
        return

    # The crash window before the export was complete: the version is recorded, its directory missing.
    shutil.rmtree(model_dir / str(version))
    while time.time() < version + 1:  # a fresh auto version would now differ from the recorded one
        time.sleep(0.1)
    assert cli.main(args) == 0
    third = capsys.readouterr().out
    assert event(third, "export")["version"] == version and versions(model_dir) == [version]
    assert saved_model.is_file()


# --- GPUs: no silent CPU fallback ----------------------------------------------------------------

GPU_UUID = "GPU-3b8f2c1e-5d0a-4e7b-9c21-0f6d5a4b3c2d"


@pytest.mark.parametrize("environ, fails", [
    ({}, False),
    ({devices.VISIBLE_DEVICES_ENV: ""}, False),
    ({devices.VISIBLE_DEVICES_ENV: "void"}, False),
    ({devices.VISIBLE_DEVICES_ENV: "none"}, False),
    ({devices.VISIBLE_DEVICES_ENV: "all"}, False),  # the CUDA images' own ENV, in GPU-less pods too
    ({devices.VISIBLE_DEVICES_ENV: GPU_UUID}, True),  # the device plugin's allocation (envvar strategy)
    ({devices.VISIBLE_DEVICES_ENV: "0,1"}, True),
    ({devices.VISIBLE_DEVICES_ENV: GPU_UUID, devices.ALLOW_CPU_FALLBACK_ENV: "1"}, False),
])
def test_gpu_check_fails_only_for_allocated_gpus_tensorflow_does_not_see(environ, fails):
    """Proves which NVIDIA_VISIBLE_DEVICES values count as "this pod was given GPUs" when TensorFlow
    sees none, and that the opt-out lets such a pod train on the CPU."""
    if fails:
        with pytest.raises(devices.DeviceError, match="TensorFlow sees none.*CLOUDML_ALLOW_CPU_FALLBACK=1"):
            devices.check_gpus(0, environ)
    else:
        assert devices.check_gpus(0, environ)["gpus"] == 0
    # With the GPUs visible nothing fails, and both counts are reported.
    assert devices.check_gpus(2, {devices.VISIBLE_DEVICES_ENV: "GPU-a,GPU-b"}) == {"gpus": 2, "gpus_allocated": 2}


def test_the_trainer_fails_fast_when_its_gpus_are_invisible_and_reports_the_gpu_count(tmp_path, monkeypatch, capsys):
    """On this CPU-only TensorFlow, a pod given a GPU (NVIDIA_VISIBLE_DEVICES=<uuid>) must stop before
    any work with the device exit code and the reason; without the variable it trains and its start
    line says 0 GPUs; the opt-out trains with the allocation in the start line."""
    if devices.visible_gpus():
        pytest.skip("needs a TensorFlow without GPUs")
    args = ["--steps", "2", "--checkpoint-every", "1", "--log-every", "1"]
    clean_env(monkeypatch, **run_dirs(tmp_path / "given"), **{devices.VISIBLE_DEVICES_ENV: GPU_UUID})
    assert cli.main(args) == devices.DEVICE_EXIT_CODE
    captured = capsys.readouterr()
    assert f"NVIDIA_VISIBLE_DEVICES={GPU_UUID}) but TensorFlow sees none" in captured.err
    assert statuses(captured.out) == [] and not (tmp_path / "given").exists()  # failed before any work

    clean_env(monkeypatch, **run_dirs(tmp_path / "cpu"))
    assert cli.main(args) == 0
    start = event(capsys.readouterr().out, "start")
    assert (start["gpus"], start["gpus_allocated"], start["replicas"]) == (0, 0, 1)

    clean_env(monkeypatch, **run_dirs(tmp_path / "fallback"),
              **{devices.VISIBLE_DEVICES_ENV: GPU_UUID, devices.ALLOW_CPU_FALLBACK_ENV: "1"})
    assert cli.main(args) == 0
    start = event(capsys.readouterr().out, "start")
    assert (start["gpus"], start["gpus_allocated"]) == (0, 1)


def sample_sweep_pod(root: Path, index: int) -> tuple[dict[str, str], dict]:
    """The environment of trial `index` of the vision sample's resnet-lr sweep, as the kubelet gives
    it (tf_config.job_pods), with s3:// mapped under root/s3/ and the trials ConfigMap mount under
    root/trial/; and the rendered trials ConfigMap."""
    from cloudml.stackfile import load_stack_file

    from components.render import WorkloadContext, render
    from components.spec import load_team
    from components.workloads.sweep import TRIALS_MOUNT_PATH
    from tf_config import job_pods
    from workload_fixtures import platform_view

    spec = load_team(load_stack_file(REPO / "stacks", "team-vision").config["cloudml:team"])
    workload = next(w for w in spec.workloads if w.name == "resnet-lr")
    objects = render(workload.kind, WorkloadContext(spec, workload, platform_view()))
    (job,) = [o for o in objects if o["kind"] == "Job"]
    (trials,) = [o for o in objects if o["kind"] == "ConfigMap"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "cloudml_trainer"]
    pod = list(job_pods(job, job_uid="uid-sweep"))[index]
    env = {k: v.replace("s3://", f"{root}/s3/").replace(TRIALS_MOUNT_PATH, str(root / "trial")) for k, v in pod.env.items()}
    return env, trials


def test_a_sweep_trial_takes_its_parameters_and_writes_its_metrics_where_the_sweep_reads_them(tmp_path, monkeypatch, capsys):
    """Proves the trainer and the sweep template agree on the env: the pod environment is the one
    the sample sweep renders (no env names written here), and with it the trial's parameters file
    is read, its values beat the command's, its metrics land under the sweep's metrics prefix as
    <index>.json and its checkpoints in the per-trial directory."""
    env, trials = sample_sweep_pod(tmp_path, 3)
    assert "3.json" in trials["data"]  # the ConfigMap the pod mounts holds this trial's file
    trial = {"learning_rate": 0.05, "batch_size": 32, "hidden_units": 4}
    (tmp_path / "trial").mkdir()
    (tmp_path / "trial" / "3.json").write_text(json.dumps(trial))
    clean_env(monkeypatch, **env)
    # The trial's values replace the command's: the command says 0.001, the trial 0.05.
    hp, _ = cli.parse_hparams(["--learning-rate", "0.001", "--hparam", "dropout=0.1", "--steps", "150"])
    assert (hp.learning_rate, hp.batch_size, hp.hidden_units, hp.dropout) == (0.05, 32, 4, 0.1)

    assert cli.main(["--learning-rate", "0.001", "--steps", "150"]) == 0
    (metrics_file,) = (tmp_path / "s3").rglob("3.json")
    assert metrics_file.parent.parts[-2:] == ("sweeps", "resnet-lr")  # the sweep's metrics prefix
    written = json.loads(metrics_file.read_text())
    assert set(written) >= {"loss", "accuracy", "auc", "log_loss", "step"}
    assert written["trial_params"] == trial and written["step"] == 150
    assert written["loss"] < 0.5  # lr 0.05 on 4 hidden units still learns in 150 steps
    (index_file,) = (tmp_path / "s3").rglob(storage.CHECKPOINT_INDEX)
    assert index_file.parent.name == "trial-3" and "uid-sweep" in index_file.parts  # per trial, per run
    latest = tf.train.latest_checkpoint(str(index_file.parent))
    assert [8, 4] in [shape for _, shape in tf.train.list_variables(latest)]  # hidden_units=4 from the trial


def test_the_evaluator_sidecar_evaluates_checkpoints_until_the_target_step_in_its_own_log_subdirectory(
        trained, tmp_path, monkeypatch, capsys):
    """The evaluator shares the run's CLOUDML_LOG_DIR with the chief (as the JobSet gives it): it
    evaluates up to the target step and writes its summaries and metrics.json under evaluator/,
    leaving the chief's metrics.json and eval summaries untouched."""
    logs = tmp_path / "logs"
    shutil.copytree(trained / "logs", logs)
    chief_metrics = json.loads((logs / "metrics.json").read_text())
    (logs / "metrics.json").write_text(json.dumps({**chief_metrics, "written_by": "chief"}))  # told apart from the evaluator's
    chief_eval_events = sorted(p.name for p in (logs / "eval").iterdir())
    tf_config = {"cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]}, "task": {"type": "evaluator", "index": 0}}
    clean_env(monkeypatch, TF_CONFIG=json.dumps(tf_config), CLOUDML_CHECKPOINT_DIR=str(trained / "checkpoints"),
              CLOUDML_LOG_DIR=str(logs))
    assert cli.main(["--steps", "300", "--metrics-file", str(tmp_path / "eval.json")]) == 0
    out = capsys.readouterr().out
    assert event(out, "done") == {"event": "done", "role": "evaluator", "step": 300}
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["step"] == 300 and result["loss"] < CONVERGED_LOSS
    own = logs / training.EVALUATOR_LOG_SUBDIR
    assert list((own / "eval").glob("events.out.tfevents.*"))
    assert json.loads((own / "metrics.json").read_text())["step"] == 300
    assert json.loads((logs / "metrics.json").read_text())["written_by"] == "chief"
    assert sorted(p.name for p in (logs / "eval").iterdir()) == chief_eval_events


def test_unknown_task_or_command_is_a_clear_error(monkeypatch, capsys):
    clean_env(monkeypatch)
    assert cli.main(["--task", "no-such-task"]) == 2
    assert "unknown task 'no-such-task': built-in tasks are ['reference']" in capsys.readouterr().err
    assert cli.main(["tokenize"]) == 2
    assert "unknown command 'tokenize'" in capsys.readouterr().err


def test_a_users_task_module_defines_model_data_loss_metrics_and_serving_outputs(tmp_path, monkeypatch):
    package = tmp_path / "src" / "my_pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(textwrap.dedent('''
        """Regression y = 2x + 1: the documented task interface, nothing of the reference task."""
        import numpy as np

        def add_arguments(parser):
            parser.add_argument("--slope", type=float, default=2.0)

        def build_model(hp):
            import keras
            x = keras.Input(shape=(1,), name="x")
            return keras.Model(x, keras.layers.Dense(1, name="linear")(x))

        def _data(hp, seed, count):
            x = np.random.RandomState(seed).uniform(-1, 1, size=(count, 1)).astype("float32")
            return x, (hp.slope * x + 1).astype("float32")

        def train_dataset(hp, input_context):
            import tensorflow as tf
            x, y = _data(hp, input_context.input_pipeline_id, 512)
            batch = input_context.get_per_replica_batch_size(hp.batch_size)
            return tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(batch, drop_remainder=True)

        def eval_dataset(hp):
            import tensorflow as tf
            return tf.data.Dataset.from_tensor_slices(_data(hp, 7, 128)).batch(64)

        def loss(labels, predictions):
            import tensorflow as tf
            return tf.reduce_mean(tf.square(labels - predictions), axis=-1)

        def metrics(labels, predictions):
            return {"mae": float(np.mean(np.abs(labels - predictions)))}

        def serving_outputs(model, x):
            return {"y": model(x, training=False)}
    '''))
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    clean_env(monkeypatch, **run_dirs(tmp_path))
    assert cli.main(["--module", "my_pkg.task", "--steps", "300", "--learning-rate", "0.1", "--model-version", "7"]) == 0
    result = json.loads((tmp_path / "logs" / "metrics.json").read_text())
    assert result["mae"] < 0.05 and result["loss"] < 0.01
    signature = tf.saved_model.load(str(tmp_path / "models" / "reference" / "7")).signatures["serving_default"]
    assert list(signature.structured_input_signature[1]) == ["x"]
    assert signature(x=tf.constant([[0.0], [1.0]]))["y"].numpy() == pytest.approx(np.array([[1.0], [3.0]]), abs=0.1)
    sys.modules.pop("my_pkg.task", None)
    sys.modules.pop("my_pkg", None)


# --- batch prediction ----------------------------------------------------------------------------


def test_batch_prediction_writes_one_prediction_per_input_record(trained, tmp_path, monkeypatch, capsys):
    clean_env(monkeypatch)
    features, _ = reference.examples(9, seed=11)
    inputs = tmp_path / "incoming"
    inputs.mkdir()
    # JSON lines: instances as lists or as objects naming the signature's input; CSV with a header.
    lines = [json.dumps(row) for row in features[:3].tolist()] + [json.dumps({"features": row}) for row in features[3:5].tolist()]
    (inputs / "part-0.jsonl").write_text("\n".join(lines) + "\n")
    (inputs / "part-1.csv").write_text("f0,f1,f2,f3,f4,f5,f6,f7\n" + "".join(",".join(map(str, r)) + "\n" for r in features[5:].tolist()))
    (inputs / "_SUCCESS").write_text("")
    model_dir = trained / "models" / "reference"
    out = tmp_path / "predictions"
    assert cli.main(["predict", "--model-dir", str(model_dir), "--input", str(inputs), "--output", str(out)]) == 0
    assert event(capsys.readouterr().out, "predictions")["records"] == 9

    assert sorted(p.name for p in out.iterdir()) == ["part-0.jsonl.predictions.jsonl", "part-1.csv.predictions.jsonl"]
    rows = [json.loads(line) for name in ("part-0.jsonl", "part-1.csv")
            for line in (out / f"{name}.predictions.jsonl").read_text().splitlines()]
    assert [r["record"] for r in rows] == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    (version,) = versions(model_dir)
    expected = tf.saved_model.load(str(model_dir / str(version))).signatures["serving_default"](
        features=tf.constant(features))["predictions"].numpy()
    assert np.array([r["predictions"] for r in rows]) == pytest.approx(expected, abs=1e-5)


# --- S3 (moto) -----------------------------------------------------------------------------------


def test_s3_run_directories_checkpoint_resume_export_and_the_rendered_batch_prediction_command(tmp_path, monkeypatch, capsys):
    """Run directories as real deployments give them (s3:// URIs under the platform's buckets),
    against moto's S3: checkpoints, logs and the model go up, a restart resumes from S3, the
    evaluator's logs go to their own prefix, and the rendered nightly-scores batchPrediction command
    predicts from S3 to S3. Every local staging directory (cloudml-*) is gone afterwards."""
    import boto3
    from moto import mock_aws

    from cloudml.stackfile import load_stack_file

    from components.render import WorkloadContext, render
    from components.spec import load_team
    from workload_fixtures import BUCKETS, platform_view

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-west-2"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    temp = tmp_path / "tmp"  # this test's own temporary directory: other tests' leftovers do not count
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with mock_aws():
        s3 = boto3.client("s3")
        for bucket in BUCKETS.values():
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "us-west-2"})
        run = "s3://{}/vision/resnet-nightly/run-1/"
        clean_env(monkeypatch, CLOUDML_CHECKPOINT_DIR=run.format(BUCKETS["checkpoints"]),
                  CLOUDML_LOG_DIR=run.format(BUCKETS["logs"]), CLOUDML_MODEL_DIR=f"s3://{BUCKETS['models']}/vision/resnet/")
        assert cli.main(["--steps", "100", "--checkpoint-every", "50"]) == 0
        assert cli.main(["--steps", "150", "--checkpoint-every", "50"]) == 0  # a restart: fresh local staging
        out = capsys.readouterr().out
        starts = [s["step"] for s in statuses(out) if s["event"] == "start"]
        assert starts == [0, 100]

        def keys(bucket, prefix):
            return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", []))

        checkpoints = keys(BUCKETS["checkpoints"], "vision/resnet-nightly/run-1/")
        assert "vision/resnet-nightly/run-1/checkpoint" in checkpoints
        assert {k.rsplit("/", 1)[1].split(".")[0] for k in checkpoints if "/ckpt-" in k} == {"ckpt-50", "ckpt-100", "ckpt-150"}
        assert storage.latest_checkpoint_step(run.format(BUCKETS["checkpoints"])) == 150
        logs = keys(BUCKETS["logs"], "vision/resnet-nightly/run-1/")
        assert any("/train/events.out.tfevents." in k for k in logs) and "vision/resnet-nightly/run-1/metrics.json" in logs
        model_keys = keys(BUCKETS["models"], "vision/resnet/")
        model_versions = sorted({k.split("/")[2] for k in model_keys})
        assert len(model_versions) == 2 and all(v.isdigit() for v in model_versions)
        assert f"vision/resnet/{model_versions[-1]}/saved_model.pb" in model_keys

        # The evaluator of the same run: its metrics and summaries under <log dir>/evaluator/.
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"chief": ["127.0.0.1:1"], "worker": ["127.0.0.1:2"]},
                                                    "task": {"type": "evaluator", "index": 0}}))
        assert cli.main(["--steps", "150", "--evaluator-poll-seconds", "0.1"]) == 0
        monkeypatch.delenv("TF_CONFIG")
        assert event(capsys.readouterr().out, "done")["step"] == 150
        evaluator_logs = [k for k in keys(BUCKETS["logs"], "vision/resnet-nightly/run-1/") if k not in logs]
        assert "vision/resnet-nightly/run-1/evaluator/metrics.json" in evaluator_logs
        assert any("/evaluator/eval/events.out.tfevents." in k for k in evaluator_logs)

        # The sample stack's nightly-scores batchPrediction, rendered, run as its container would.
        spec = load_team(load_stack_file(REPO / "stacks", "team-vision").config["cloudml:team"])
        workload = next(w for w in spec.workloads if w.name == "nightly-scores")
        (cron,) = render(workload.kind, WorkloadContext(spec, workload, platform_view()))
        (container,) = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", "cloudml_trainer", "predict"]
        features, _ = reference.examples(6, seed=3)
        s3.put_object(Bucket=BUCKETS["datasets"], Key="vision/scoring/incoming/day-1.jsonl",
                      Body="".join(json.dumps(r) + "\n" for r in features.tolist()).encode())
        assert cli.main(container["command"][3:] + container["args"]) == 0
        body = s3.get_object(Bucket=BUCKETS["datasets"], Key="vision/scoring/predictions/day-1.jsonl.predictions.jsonl")["Body"]
        rows = [json.loads(line) for line in body.read().decode().splitlines()]
        assert [r["record"] for r in rows] == list(range(6))
        assert all(len(r["predictions"]) == 1 and 0 <= r["predictions"][0] <= 1 for r in rows)
        assert event(capsys.readouterr().out, "predictions")["model_version"] == int(model_versions[-1])
    assert sorted(p.name for p in temp.iterdir() if p.name.startswith("cloudml-")) == []
