"""Distributed TensorFlow for real: the sample stacks' distributedTraining workloads rendered, every
pod's environment computed as the kubelet would (tests/tf_config.py: downward API, `$(VAR)`
expansion), and one real `python -m cloudml_trainer` process started per pod on loopback.

What is replaced, and only that: each TF_CONFIG host (`<jobset>-<task>-0-<i>.<jobset>:2222`) becomes
a free 127.0.0.1 port, consistently in every pod's TF_CONFIG; `s3://` run directories become a local
directory tree (same keys: bucket/team/workload/<JobSet UID>/), since TF 2.20 has no S3 file system
and the trainer's S3 staging is tested against moto in test_trainer.py; the sample's training
arguments (`--module vision_tasks.resnet --epochs 30`) become the tiny reference task, so a run takes seconds.
Each attempt's processes get their own TMPDIR under the test's directory, so temporary directories
a run leaves behind are seen (and never land in the machine's /tmp).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import copy
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cloudml.stackfile import load_stack_file
from components.render import WorkloadContext, render
from components.spec import load_team
from tf_config import job_pods, jobset_pods
from workload_fixtures import platform_view

REPO = Path(__file__).resolve().parent.parent
TRAINER_SRC = REPO / "images" / "trainer" / "src"
if str(TRAINER_SRC) not in sys.path:
    sys.path.insert(0, str(TRAINER_SRC))

from cloudml_trainer import storage  # noqa: E402  (pure Python: no TensorFlow import in this process)
from cloudml_trainer.training import STATUS_PREFIX  # noqa: E402

STATUS = STATUS_PREFIX.strip()
PROCESS_TIMEOUT = 150  # seconds for one group of processes; a hung collective fails the test, not the suite


def sample_workload(stack: str, workload_name: str, **changes) -> list[dict]:
    """What a sample team stack renders for one of its workloads; `changes` (camelCase keys, as in
    the stack file) make a variant of that workload."""
    # Read as `cloudml plan` reads it (YAML 1.2, `secure:` values replaced by a placeholder).
    config = copy.deepcopy(load_stack_file(REPO / "stacks", stack).config["cloudml:team"])
    (entry,) = [w for w in config["workloads"] if w["name"] == workload_name]
    entry.update(changes)
    spec = load_team(config)
    workload = next(w for w in spec.workloads if w.name == workload_name)
    return render(workload.kind, WorkloadContext(spec, workload, platform_view(spec.name)))


def sample_jobset(stack: str, workload_name: str, **changes) -> dict:
    """The JobSet a sample team stack renders for one of its distributedTraining workloads."""
    (jobset,) = sample_workload(stack, workload_name, **changes)
    assert jobset["kind"] == "JobSet"
    return jobset


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def loopback(cluster: dict[str, list[str]]) -> dict[str, str]:
    """Every host:port of the cluster -> a free 127.0.0.1 port (one mapping for all pods)."""
    addresses = [a for tasks in cluster.values() for a in tasks]
    return dict(zip(addresses, (f"127.0.0.1:{p}" for p in free_ports(len(addresses)))))


class Pod:
    """One pod of the JobSet as a real process."""

    def __init__(self, pod, env: dict[str, str], command: list[str], log: Path):
        self.task, self.index, self.env, self.command, self.log = pod.task, pod.index, env, command, log
        self.process: subprocess.Popen | None = None

    @property
    def name(self) -> str:
        return f"{self.task}-{self.index}"

    def start(self) -> None:
        self._out = open(self.log, "w")
        self.process = subprocess.Popen(self.command, env=self.env, stdout=self._out, stderr=subprocess.STDOUT,
                                        cwd=self.log.parent, start_new_session=True)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        if self.process:
            self._out.close()

    def statuses(self) -> list[dict]:
        return [json.loads(line[len(STATUS_PREFIX):]) for line in self.log.read_text().splitlines()
                if line.startswith(STATUS_PREFIX)]

    def event(self, name: str) -> dict:
        found = [s for s in self.statuses() if s["event"] == name]
        assert len(found) == 1, f"{self.name}: {len(found)} {name!r} events\n{self.log.read_text()[-3000:]}"
        return found[0]


def pods_of(jobset: dict, root: Path, args: list[str], addresses: dict[str, str], attempt: int, uid: str) -> list[Pod]:
    """The JobSet's pods as processes (not started): the rendered command with test args, the
    kubelet-computed env with TF_CONFIG on loopback and s3:// mapped under root/s3/."""
    pods = []
    logs = root / f"attempt-{attempt}"
    logs.mkdir(parents=True, exist_ok=True)
    temp = temp_dir(root, attempt)
    temp.mkdir(parents=True, exist_ok=True)
    for pod in jobset_pods(jobset, restart_attempt=attempt, jobset_uid=uid):
        (container,) = [c for c in pod_template(jobset, pod.task)["spec"]["containers"] if c["name"] == "main"]
        assert container["command"] == ["python", "-m", "cloudml_trainer"]
        env = {k: v.replace("s3://", f"{root}/s3/") for k, v in pod.env.items()}
        if pod.tf_config is not None:
            config = pod.tf_config
            config["cluster"] = {job: [addresses[a] for a in tasks] for job, tasks in config["cluster"].items()}
            env["TF_CONFIG"] = json.dumps(config)
        env.update(PATH=os.environ.get("PATH", "/usr/bin:/bin"), HOME=str(root), PYTHONPATH=str(TRAINER_SRC),
                   TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", TMPDIR=str(temp))
        command = [sys.executable, *container["command"][1:], *args]
        pods.append(Pod(pod, env, command, logs / f"{pod.task}-{pod.index}.log"))
    return pods


def temp_dir(root: Path, attempt: int) -> Path:
    """TMPDIR of an attempt's processes (the pods' own /tmp)."""
    return root / "tmp" / f"attempt-{attempt}"


def leftovers(root: Path, attempt: int) -> list[str]:
    """The trainer's temporary directories (cloudml-*) an attempt left behind."""
    return sorted(p.name for p in temp_dir(root, attempt).iterdir() if p.name.startswith("cloudml-"))


def pod_template(jobset: dict, task: str) -> dict:
    (rjob,) = [r for r in jobset["spec"]["replicatedJobs"] if r["name"] == task]
    return rjob["template"]["spec"]["template"]


def run_to_completion(pods: list[Pod]) -> None:
    """Start every pod, wait for all to exit, and never leave a process behind."""
    try:
        for pod in pods:
            pod.start()
        wait_all(pods)
    finally:
        for pod in pods:
            pod.kill()


def wait_all(pods: list[Pod], timeout: float = PROCESS_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    for pod in pods:
        try:
            pod.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{pod.name} did not finish in {timeout}s:\n{pod.log.read_text()[-3000:]}")
        assert pod.process.returncode == 0, f"{pod.name} exited {pod.process.returncode}:\n{pod.log.read_text()[-3000:]}"


def run_dir(pods: list[Pod], name: str) -> Path:
    (value,) = {p.env[name] for p in pods}  # one run directory for the whole group
    return Path(value)


# --- MultiWorkerMirroredStrategy: the vision team's resnet-dist (2 workers, no chief) ---------------

MW_ARGS = ["--task", "reference", "--steps", "200", "--checkpoint-every", "50", "--batch-size", "64"]


def test_sample_multi_worker_jobset_trains_on_every_pod_and_the_chief_exports(tmp_path):
    jobset = sample_jobset("team-vision", "resnet-dist")
    pods = pods_of(jobset, tmp_path, MW_ARGS, loopback(next(jobset_pods(jobset)).tf_config["cluster"]), 0, "uid-mw")
    assert [p.name for p in pods] == ["worker-0", "worker-1"]
    run_to_completion(pods)
    for pod in pods:
        start, done = pod.event("start"), pod.event("done")
        assert (start["strategy"], start["step"], done["step"]) == ("CollectiveAllReduceStrategy", 0, 200)
    # Worker 0 is TensorFlow's chief (no chief job): it alone keeps checkpoints, metrics and the model.
    checkpoints = run_dir(pods, "CLOUDML_CHECKPOINT_DIR")
    assert "uid-mw" in checkpoints.parts and storage.latest_checkpoint_step(str(checkpoints)) == 200
    model_dir = run_dir(pods, "CLOUDML_MODEL_DIR")
    (version,) = [p for p in model_dir.iterdir()]
    assert version.name.isdigit() and (version / "saved_model.pb").is_file()
    assert pods[0].event("done")["export"]["version"] == int(version.name)
    assert pods[1].event("done")["export"] == {"path": None, "version": None}  # wrote to a temp dir
    metrics = json.loads((run_dir(pods, "CLOUDML_LOG_DIR") / "metrics.json").read_text())
    assert metrics["step"] == 200 and metrics["loss"] < 0.3
    assert leftovers(tmp_path, 0) == []  # worker 1's checkpoint and export scratch directories are gone


# --- MultiWorkerMirroredStrategy with a chief: resnet-dist as chief: 1 + workers: 1 ------------------

CHIEF_ARGS = ["--task", "reference", "--steps", "100", "--checkpoint-every", "50", "--log-every", "50"]


def test_multi_worker_with_a_chief_trains_on_both_and_only_the_chief_exports(tmp_path):
    """The sample's resnet-dist with a chief job (TF_CONFIG exactly as the template writes it for
    that variant): both processes train under MultiWorkerMirroredStrategy; the chief, not worker 0,
    keeps the checkpoints, the metrics and the one exported version."""
    jobset = sample_jobset("team-vision", "resnet-dist", chief=1, workers=1)
    cluster = next(jobset_pods(jobset)).tf_config["cluster"]
    assert sorted(cluster) == ["chief", "worker"] and (len(cluster["chief"]), len(cluster["worker"])) == (1, 1)
    pods = pods_of(jobset, tmp_path, CHIEF_ARGS, loopback(cluster), 0, "uid-chief")
    by_name = {p.name: p for p in pods}
    assert sorted(by_name) == ["chief-0", "worker-0"]
    run_to_completion(pods)
    for pod in pods:
        start, done = pod.event("start"), pod.event("done")
        assert (start["strategy"], start["replicas"], done["step"]) == ("CollectiveAllReduceStrategy", 2, 100), pod.name
    chief, worker = by_name["chief-0"].event("done"), by_name["worker-0"].event("done")
    (version,) = list(run_dir(pods, "CLOUDML_MODEL_DIR").iterdir())
    assert chief["export"] == {"version": int(version.name), "path": str(version)}
    assert (version / "saved_model.pb").is_file()
    assert worker["export"] == {"path": None, "version": None} and "metrics" not in worker
    assert [s["event"] for s in by_name["worker-0"].statuses()].count("export") == 0
    assert chief["metrics"]["step"] == 100
    assert storage.latest_checkpoint_step(str(run_dir(pods, "CLOUDML_CHECKPOINT_DIR"))) == 100
    assert leftovers(tmp_path, 0) == []


# --- MirroredStrategy: one pod, several devices (resnet-nightly: gpus 2), on 2 logical CPUs -------------

MIRRORED = """
import sys
import tensorflow as tf
(cpu,) = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from cloudml_trainer import cli, cluster, training
hp, task = cli.parse_hparams(sys.argv[1:])
training.run(hp, task, cluster.role_from_env(), devices=[d.name for d in tf.config.list_logical_devices("CPU")])
"""


def test_local_training_mirrors_over_several_devices(tmp_path):
    """MirroredStrategy, the path a one-pod training job with several GPUs takes, with the CPU split
    into 2 logical devices standing in for 2 GPUs, in the environment the sample resnet-nightly
    (gpus: 2) renders: 2 replicas in sync, training converges and the model is exported."""
    (cron,) = [o for o in sample_workload("team-vision", "resnet-nightly") if o["kind"] == "CronJob"]
    job = {"metadata": {"name": "resnet-nightly-29000000"}, "spec": cron["spec"]["jobTemplate"]["spec"]}
    (pod,) = job_pods(job, job_uid="uid-mirrored")
    assert pod.tf_config is None  # one pod: no cluster
    env = {k: v.replace("s3://", f"{tmp_path}/s3/") for k, v in pod.env.items()}
    (tmp_path / "tmp").mkdir()
    env.update(PATH=os.environ.get("PATH", "/usr/bin:/bin"), HOME=str(tmp_path), PYTHONPATH=str(TRAINER_SRC),
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1", TMPDIR=str(tmp_path / "tmp"))
    result = subprocess.run([sys.executable, "-c", MIRRORED, "--task", "reference", "--steps", "100", "--checkpoint-every", "50",
                             "--log-every", "50"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=PROCESS_TIMEOUT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    found = {}
    for line in result.stdout.splitlines():
        if line.startswith(STATUS_PREFIX):
            status = json.loads(line[len(STATUS_PREFIX):])
            found[status["event"]] = status
    assert (found["start"]["strategy"], found["start"]["replicas"]) == ("MirroredStrategy", 2)
    assert found["done"]["step"] == 100 and found["done"]["metrics"]["loss"] < 0.4
    assert (Path(found["done"]["export"]["path"]) / "saved_model.pb").is_file()


# --- fault: a worker dies, the JobSet restarts the whole group, training resumes --------------------

FAULT_ARGS = ["--task", "reference", "--steps", "400", "--checkpoint-every", "25", "--log-every", "25"]
KILL_AFTER_STEP = 100


def test_a_killed_worker_and_a_group_restart_resume_from_the_checkpoint(tmp_path):
    jobset = sample_jobset("team-vision", "resnet-dist")
    cluster = next(jobset_pods(jobset)).tf_config["cluster"]
    first = pods_of(jobset, tmp_path, FAULT_ARGS, loopback(cluster), attempt=0, uid="uid-fault")
    checkpoints = run_dir(first, "CLOUDML_CHECKPOINT_DIR")
    try:
        for pod in first:
            pod.start()
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while (storage.latest_checkpoint_step(str(checkpoints)) or 0) < KILL_AFTER_STEP:
            assert all(p.process.poll() is None for p in first), "a pod exited before the fault"
            assert time.monotonic() < deadline, "no checkpoint reached step %d" % KILL_AFTER_STEP
            time.sleep(0.2)
        assert all(p.process.poll() is None for p in first)  # mid-training: nobody has finished
        first[1].kill()  # worker 1 dies; its Job fails; the JobSet deletes the other Jobs' pods
        first[0].kill()
    finally:
        for pod in first:
            pod.kill()
    saved = storage.latest_checkpoint_step(str(checkpoints))
    assert KILL_AFTER_STEP <= saved < 400
    # A killed process cleans nothing: worker 1's scratch checkpoints stay in its (pod's) TMPDIR.
    assert [n.rsplit("-", 1)[0] for n in leftovers(tmp_path, 0)] == ["cloudml-worker-checkpoints"]
    assert all(not any(s["event"] == "done" for s in p.statuses()) for p in first)

    # restart attempt 1 of the same JobSet (same UID): new Jobs, new pods, same run directories.
    second = pods_of(jobset, tmp_path, FAULT_ARGS, loopback(cluster), attempt=1, uid="uid-fault")
    assert run_dir(second, "CLOUDML_CHECKPOINT_DIR") == checkpoints
    run_to_completion(second)
    for pod in second:
        start = pod.event("start")
        assert (start["step"], start["restored"]) == (saved, f"ckpt-{saved}"), pod.name
        assert pod.event("done")["step"] == 400
    assert storage.latest_checkpoint_step(str(checkpoints)) == 400
    assert len(list(run_dir(second, "CLOUDML_MODEL_DIR").iterdir())) == 1
    assert leftovers(tmp_path, 1) == []  # a run that ends cleans up after itself


# --- ParameterServerStrategy: the nlp team's bert-ps (chief + 1 ps + 2 workers) ---------------------

PS_ARGS = ["--task", "reference", "--steps", "120", "--checkpoint-every", "60", "--log-every", "60"]


def test_sample_parameter_server_jobset_completes_with_the_chief_as_coordinator(tmp_path):
    jobset = sample_jobset("team-nlp", "bert-ps")
    pods = pods_of(jobset, tmp_path, PS_ARGS, loopback(next(jobset_pods(jobset)).tf_config["cluster"]), 0, "uid-ps")
    by_name = {p.name: p for p in pods}
    assert sorted(by_name) == ["chief-0", "ps-0", "worker-0", "worker-1"]
    servers = [p for p in pods if p.task != "chief"]
    try:
        for pod in pods:
            pod.start()
        wait_all([by_name["chief-0"]])
        # ps and workers serve until the JobSet (success policy: the chief) ends them.
        assert all(p.process.poll() is None for p in servers)
    finally:
        for pod in pods:
            pod.kill()
    start, done = by_name["chief-0"].event("start"), by_name["chief-0"].event("done")
    assert (start["strategy"], start["step"], done["step"]) == ("ParameterServerStrategyV2", 0, 120)
    assert all(p.event("server")["role"] == p.name for p in servers)
    (version,) = list(run_dir(pods, "CLOUDML_MODEL_DIR").iterdir())
    assert (version / "saved_model.pb").is_file()
    assert done["metrics"]["loss"] < 0.4
    assert leftovers(tmp_path, 0) == []
