"""How `cloudml plan` scales with the number of workloads (a measurement, not a test).

For each size (10, 100 and 1000 workloads by default) a fresh Python process generates a platform
stack and N team stacks of M workloads each into a temporary stacks directory — a deterministic mix
of every workload kind (about 35% training, 10% distributedTraining, 15% modelService, 10%
devEnvironment, 10% sweep, 10% batchPrediction, 10% tensorboard), with each team's quotas sized
from what its workloads can hold at once — then:

1. plans the platform stack and every team stack with one `cloudml.plan.Planner` (validation,
   cross-stack and quota checks, the program under mocks, and the policy rules) and writes each
   plan with `write_plan` into a temporary output directory (what `cloudml plan --all` does, minus
   the console report), timing the platform plan, the team plans and the policy evaluation;
2. renders the same workloads with `components.render.render` alone (Jinja + YAML, no Pulumi), with
   a cold template cache like the plan had, so the plan's overhead over pure rendering is visible;
3. reports its peak RSS (`ru_maxrss`, so one number per size).

The parent prints a table, the growth ratio time(1000)/time(100), PASS/FAIL against the targets,
and with `--json PATH` writes every figure. It exits 0 whatever the targets say; it exits nonzero
when planning (or rendering) itself fails, and with status 3 at once when a generated stack is
invalid or violates a mandatory policy rule (then it would measure the wrong thing).

    .venv/bin/python benchmarks/plan_scale.py [--sizes 10,100,1000] [--repeat 3] [--json PATH] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform as host
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# size (total workloads) -> (teams N, workloads per team M)
SHAPES = {10: (1, 10), 100: (10, 10), 1000: (20, 50)}
TARGET_SECONDS_1000 = 30.0
TARGET_RSS_MIB_1000 = 1.5 * 1024
TARGET_GROWTH_1000_OVER_100 = 12.0

PLATFORM_STACK = "platform-bench"
IMAGE = "111122223333.dkr.ecr.us-west-2.amazonaws.com/cloudml/trainer:0.1.0"
# GPU pool families of the generated platform: GPU type -> (instance types, capacity, GPUs per node).
# The GPUs per node must match components/gpu_catalog.py (the spec rejects a mismatch). A family gets
# as many pools (`<type>-1`, `<type>-2`, ...) of at most MAX_POOL_NODES nodes as its demand needs.
POOL_FAMILIES = {
    "a10g": (["g5.12xlarge"], "on-demand", 4),
    "l4": (["g6.12xlarge", "g6.24xlarge"], "spot", 4),
    "h100": (["p5.48xlarge"], "on-demand", 8),
}
GPU_PER_NODE = {gpu_type: per_node for gpu_type, (_, _, per_node) in POOL_FAMILIES.items()}
# The mandatory policy rule gpu-pool-max-size caps a GPU pool at maxGpuPoolNodes (16 by default).
MAX_POOL_NODES = 16
# CPU and memory a GPU pod asks for, per GPU (about a node's share per GPU of each instance type).
CPU_PER_GPU = {"a10g": 10, "l4": 10, "h100": 20}
MEMORY_GI_PER_GPU = {"a10g": 40, "l4": 40, "h100": 200}
# Quota headroom over what a team's workloads can hold at once (below 90% use: no near-quota warning).
QUOTA_HEADROOM = 1.25
TEAM_BASES = ("vision", "nlp", "speech", "recsys", "search", "ads", "robotics", "genai", "fraud", "maps")
TASKS = ("resnet", "bert", "wav2vec", "dlrm", "t5", "vit", "gpt", "ctr", "detr", "unet")
PEOPLE = ("alice", "bob", "carol", "dan", "erin", "frank", "grace", "heidi", "ivan", "judy")

# The kind mix: a team's workloads follow a cycle of 20 slots, 7 training, 2 distributedTraining,
# 3 modelService, 2 devEnvironment, 2 sweep, 2 batchPrediction, 2 tensorboard (35/10/15/10/10/10/10%).
# Each half of the cycle holds every kind; odd teams start with the second half, so the sizes of
# 10-workload teams (10 and 100) have the same mix on average as 1000 (1000: exact; 100: exact; 10:
# the first half only, 40% training and 10% modelService).
KIND_CYCLE = (
    "training", "distributedTraining", "training", "modelService", "devEnvironment",
    "training", "sweep", "batchPrediction", "training", "tensorboard",
    "training", "modelService", "distributedTraining", "training", "devEnvironment",
    "modelService", "sweep", "training", "batchPrediction", "tensorboard",
)
KINDS = ("training", "distributedTraining", "modelService", "devEnvironment", "sweep", "batchPrediction", "tensorboard")


# Exit status of a child (and of the script) when a generated stack is invalid or violates a
# mandatory policy rule.
INVALID_EXIT = 3


class InvalidBenchmark(Exception):
    """A generated stack is invalid or violates a mandatory policy rule: the figures would be wrong."""


# --- stack generation -------------------------------------------------------------------------


def team_name(t: int) -> str:
    """DNS-1123, at most 24 characters (spec.TeamName)."""
    return f"{TEAM_BASES[t % len(TEAM_BASES)]}-{t:02d}"


def kind_of(team: int, i: int) -> str:
    half = len(KIND_CYCLE) // 2
    return KIND_CYCLE[(i + (team % 2) * half) % len(KIND_CYCLE)]


def _gpu_choice(w: dict, rng: random.Random, default_gpu_type: str, choices=(1, 1, 2, 4, 8), key: str = "gpus") -> str:
    """Set GPUs (a quarter of GPU workloads pick a type other than the team default), never more
    than a node of the type holds, with CPU and memory in proportion; return the GPU type."""
    gpu_type = default_gpu_type
    if rng.random() < 0.25:
        gpu_type = rng.choice(sorted(GPU_PER_NODE))
        w["gpuType"] = gpu_type
    gpus = min(rng.choice(choices), GPU_PER_NODE[gpu_type])
    w[key] = gpus
    w["cpu"] = str(CPU_PER_GPU[gpu_type] * gpus)
    w["memory"] = f"{MEMORY_GI_PER_GPU[gpu_type] * gpus}Gi"
    return gpu_type


def _trainer(task: str, *args: str) -> dict:
    return {"command": ["python", "-m", "cloudml_trainer"], "args": ["--task", task, *args]}


def workload(team: int, i: int, default_gpu_type: str) -> dict:
    """One realistic workload of the kind the cycle gives slot i; deterministic (seeded per team and
    index). References to other workloads (modelService/batchPrediction `model`, tensorboard
    `logsFrom`) are filled in by `team_workloads`, once the team's workloads are known."""
    rng = random.Random(f"{team}/{i}")
    task = TASKS[i % len(TASKS)]
    kind = kind_of(team, i)
    w: dict = {"kind": kind}
    if kind == "training":
        w["name"] = f"{task}-{i:04d}"
        if rng.random() < 0.4:
            _gpu_choice(w, rng, default_gpu_type)
            w.update(_trainer(task, "--epochs", str(rng.choice((10, 30, 90))), "--batch-size", str(rng.choice((64, 128, 256)))))
            w["env"] = {"TF_CPP_MIN_LOG_LEVEL": "1", "NCCL_DEBUG": "WARN"}
            w["volumes"] = [{"source": "datasets", "mountPath": "/data", "subPath": task}]
            if rng.random() < 0.5:
                w["activeDeadline"] = rng.choice(("6h", "12h", "24h"))
            if rng.random() < 0.5:
                w["model"] = task
        else:
            step = rng.choice(("prepare", "tokenize", "evaluate"))
            w["cpu"] = rng.choice(("2", "4", "8"))
            w["memory"] = rng.choice(("8Gi", "16Gi", "32Gi"))
            w["command"] = ["python", "-m", "cloudml_trainer", step]
            w["args"] = ["--shards", str(rng.choice((16, 64, 256))), "--out", f"/mnt/shared/{task}-{step}"]
            w["volumes"] = [{"source": "shared", "mountPath": "/mnt/shared"}]
            if rng.random() < 0.3:
                w["preCommands"] = [f"mkdir -p /mnt/shared/{task}-{step}"]
                w["postCommands"] = [f"ls /mnt/shared/{task}-{step} | wc -l"]
        if rng.random() < 0.25:
            w["schedule"] = rng.choice(("0 3 * * *", "30 1 * * 1", "@weekly", "*/30 * * * *"))
            w["backoffLimit"] = 1
        if rng.random() < 0.2:
            w["ttlAfterFinished"] = "6h"
    elif kind == "distributedTraining":
        w["name"] = f"{task}-dist-{i:04d}"
        w["model"] = task
        if rng.random() < 0.25:
            w.update({"strategy": "parameterServer", "chief": 1, "ps": rng.choice((1, 2)), "workers": rng.choice((2, 4))})
            if rng.random() < 0.5:
                _gpu_choice(w, rng, default_gpu_type, choices=(1,), key="gpusPerWorker")
            else:
                w["cpu"], w["memory"] = "4", "16Gi"
        else:
            w["workers"] = rng.choice((2, 2, 3, 4))
            if rng.random() < 0.3:
                w["chief"] = 1
            _gpu_choice(w, rng, default_gpu_type, choices=(1, 2, 4), key="gpusPerWorker")
        if rng.random() < 0.2:
            w["evaluator"] = 1
        w["maxRestarts"] = rng.choice((1, 3, 5))
        w.update(_trainer(task, "--epochs", str(rng.choice((30, 90))), "--checkpoint-every", "500"))
        w["volumes"] = [{"source": "datasets", "mountPath": "/data", "subPath": task}]
        if rng.random() < 0.5:
            w["activeDeadline"] = rng.choice(("12h", "24h", "48h"))
    elif kind == "modelService":
        w["name"] = f"{task}-serve-{i:04d}"
        w["model"] = task  # replaced by a model the team trains (team_workloads)
        if rng.random() < 0.6:
            _gpu_choice(w, rng, default_gpu_type, choices=(1,))
        else:
            w["cpu"], w["memory"] = rng.choice((("2", "8Gi"), ("4", "16Gi")))
        w["replicas"] = rng.choice((1, 2, 2, 3))
        roll = rng.random()
        if roll < 0.3:
            w["versionLabels"] = {"stable": 3, "canary": 4}
        elif roll < 0.5:
            w["version"] = rng.choice((1, 2, 5))
        if rng.random() < 0.4:
            w["batching"] = {"maxBatchSize": rng.choice((32, 64, 128)), "batchTimeoutMicros": rng.choice((1000, 2000))}
        if rng.random() < 0.3:
            w["expose"] = "internal"
    elif kind == "devEnvironment":
        w["name"] = f"{PEOPLE[(team + i) % len(PEOPLE)]}-{i:04d}"
        if rng.random() < 0.4:
            _gpu_choice(w, rng, default_gpu_type, choices=(1,))
        else:
            w["cpu"], w["memory"] = rng.choice((("2", "8Gi"), ("4", "16Gi")))
        w["idleTimeout"] = rng.choice(("1h", "2h", "4h"))
        w["homeSize"] = rng.choice(("20Gi", "50Gi", "100Gi"))
        w["volumes"] = [{"source": "datasets", "mountPath": "/data"}, {"source": "shared", "mountPath": "/mnt/shared"}]
        if rng.random() < 0.2:
            w["expose"] = "internal"
    elif kind == "sweep":
        w["name"] = f"{task}-sweep-{i:04d}"
        if rng.random() < 0.5:
            _gpu_choice(w, rng, default_gpu_type, choices=(1,))
        else:
            w["cpu"], w["memory"] = "2", "8Gi"
        w.update(_trainer(task, "--epochs", "5"))
        if rng.random() < 0.5:
            w["parameters"] = {"learning_rate": [0.1, 0.03, 0.01], "batch_size": [128, 256]}
            trials = 6
        else:
            trials = rng.choice((8, 12, 20))
            w.update({"algorithm": "random", "trials": trials, "seed": rng.randrange(100)})
            w["parameters"] = {"learning_rate": [0.00001, 0.00003, 0.0001], "warmup_steps": [0, 500, 1000], "dropout": [0.0, 0.1]}
        w["parallelism"] = min(trials, rng.choice((2, 3, 4)))
        w["maxFailedTrials"] = rng.choice((0, 1, 2))
        w["retriesPerTrial"] = rng.choice((1, 2))
        w["volumes"] = [{"source": "datasets", "mountPath": "/data", "subPath": task}]
    elif kind == "batchPrediction":
        w["name"] = f"{task}-score-{i:04d}"
        w["model"] = task  # replaced by a model of the team (team_workloads)
        w["cpu"], w["memory"] = rng.choice((("2", "8Gi"), ("4", "16Gi")))
        w["input"] = {"bucket": "datasets", "path": f"scoring/{task}/incoming"}
        w["output"] = {"bucket": "datasets", "path": f"scoring/{task}/predictions"}
        if rng.random() < 0.5:
            w["schedule"] = rng.choice(("30 5 * * *", "0 */6 * * *", "@daily"))
        if rng.random() < 0.3:
            w["activeDeadline"] = "4h"
    elif kind == "tensorboard":
        w["name"] = f"{task}-tb-{i:04d}"
        w["logsFrom"] = ""  # filled in by team_workloads
        w["cpu"], w["memory"] = "500m", "2Gi"
        if rng.random() < 0.2:
            w["expose"] = "internal"
    if rng.random() < 0.3:
        w["labels"] = {"example.com/cost-center": f"{team_name(team)}-research"}
    if rng.random() < 0.2:
        w["annotations"] = {"example.com/owner": f"{team_name(team)}: {task} #{i}"}
    return w


def team_workloads(team: int, per_team: int, default_gpu_type: str) -> list[dict]:
    """The team's workloads, with their references resolved inside the team: a modelService serves,
    and a batchPrediction uses, a model the team's training or distributedTraining workloads export;
    a tensorboard shows the logs of one of its training, distributedTraining or sweep workloads."""
    workloads = [workload(team, i, default_gpu_type) for i in range(per_team)]
    trained = [w.get("model", w["name"]) for w in workloads if w["kind"] in ("training", "distributedTraining")]
    logged = [w["name"] for w in workloads if w["kind"] in ("training", "distributedTraining", "sweep")]
    for i, w in enumerate(workloads):
        rng = random.Random(f"{team}/{i}/ref")
        if w["kind"] in ("modelService", "batchPrediction"):
            w["model"] = rng.choice(trained)
        elif w["kind"] == "tensorboard":
            w["logsFrom"] = rng.choice(logged)
    return workloads


def _headroom(amount: float) -> int:
    return math.ceil(amount * QUOTA_HEADROOM)


def generate_stacks(stacks_dir: Path, teams: int, per_team: int) -> dict:
    """Write Pulumi.platform-bench.yaml and Pulumi.team-<name>.yaml; return what was generated.

    Every team stack is validated with `load_team` here (InvalidBenchmark if one is not). Each team's
    quotas (GPU, CPU, memory, storage, load balancers) are what its workloads can hold at once, as
    components.spec counts it, plus QUOTA_HEADROOM; the GPU pools are sized so that their capacity
    covers the sum of all GPU quotas (no quota above capacity, which the spec rejects, and no
    oversubscription warning), with no pool above MAX_POOL_NODES nodes (policy gpu-pool-max-size).
    """
    import yaml

    from components.errors import ConfigError
    from components.fieldtypes import quantity_bytes
    from components.spec import (
        S3_VOLUMES,
        TEAM_KEY,
        DevEnvironmentWorkload,
        concurrent_cpu_memory,
        concurrent_gpus,
        load_balancers,
        load_team,
        requested_gpus,
    )
    from components.platform.storage import SHARED_CLAIM_REQUEST, S3_CLAIM_REQUEST

    gpu_types = sorted(GPU_PER_NODE)
    demand = {gpu_type: 0 for gpu_type in gpu_types}
    tenants: dict[str, dict] = {}
    counts = {kind: 0 for kind in KINDS} | {"gpuWorkloads": 0, "cronWorkloads": 0, "loadBalancers": 0}
    # The claims the platform makes in every team namespace (shared EFS + the 3 bucket volumes).
    platform_claims = quantity_bytes(SHARED_CLAIM_REQUEST) + len(S3_VOLUMES) * quantity_bytes(S3_CLAIM_REQUEST)
    for t in range(teams):
        default_gpu_type = gpu_types[t % len(gpu_types)]
        team_doc = {
            "name": team_name(t),
            "platformStack": f"organization/cloudml/{PLATFORM_STACK}",
            "defaults": {"image": IMAGE, "gpuType": default_gpu_type, "cpu": "8", "memory": "32Gi"},
            "workloads": team_workloads(t, per_team, default_gpu_type),
        }
        try:
            spec = load_team(team_doc)
        except ConfigError as error:
            raise InvalidBenchmark(f"generated team stack {team_name(t)} is invalid:\n{error}") from None
        gpus = cpu = memory = homes = lbs = 0
        for w in spec.workloads:
            held = concurrent_gpus(w)
            gpus += held
            if held:
                demand[w.gpu_type or default_gpu_type] += held
            c, m = concurrent_cpu_memory(w, spec.defaults)
            cpu, memory = cpu + c, memory + m
            if isinstance(w, DevEnvironmentWorkload):
                homes += quantity_bytes(w.home_size)
            lbs += load_balancers(w)
            counts[w.kind] += 1
            counts["gpuWorkloads"] += requested_gpus(w) > 0
            counts["cronWorkloads"] += getattr(w, "schedule", None) is not None
        counts["loadBalancers"] += lbs
        tenants[team_name(t)] = {
            "gpuQuota": max(1, _headroom(gpus)),
            "cpuQuota": str(max(8, _headroom(cpu / 1000))),
            "memoryQuota": f"{max(32, _headroom(memory / 2**30))}Gi",
            "storageQuota": f"{max(1024, _headroom((platform_claims + homes) / 2**30))}Gi",
            "loadBalancers": lbs + 2,
        }
        _write_yaml(stacks_dir / f"Pulumi.team-{team_name(t)}.yaml", {"config": {TEAM_KEY: team_doc}}, yaml)
    # Spread the quota GPUs over the types in proportion to the demand, in pools of <= MAX_POOL_NODES.
    quota_gpus = sum(t["gpuQuota"] for t in tenants.values())
    total_demand = max(1, sum(demand.values()))
    pools = []
    for gpu_type in gpu_types:
        instance_types, capacity, per_node = POOL_FAMILIES[gpu_type]
        nodes = max(1, math.ceil(quota_gpus * demand[gpu_type] / total_demand / per_node))
        for k in range(math.ceil(nodes / MAX_POOL_NODES)):
            pools.append({
                "name": f"{gpu_type}-{k + 1}", "instanceTypes": instance_types, "capacity": capacity, "min": 0,
                "max": min(MAX_POOL_NODES, nodes - k * MAX_POOL_NODES),
            })
    platform = {
        "config": {
            "aws:region": "us-west-2",
            "cloudml:platform": {
                "name": "ml-bench",
                "kubernetesVersion": "1.31",
                "network": {"vpcCidr": "10.40.0.0/16", "availabilityZones": 3},
                "endpoint": {"publicAccessCidrs": [], "privateAccessCidrs": ["10.0.0.0/8"]},
                "admins": ["arn:aws:iam::111122223333:role/platform-admins"],
                "systemPool": {"instanceType": "m6i.xlarge", "min": 2, "max": 4},
                "gpuPools": pools,
                "storage": {"sharedFilesystem": "efs"},  # devEnvironment homes live on EFS
                "teams": tenants,
            },
        }
    }
    _write_yaml(stacks_dir / f"Pulumi.{PLATFORM_STACK}.yaml", platform, yaml)
    capacity = sum(p["max"] * POOL_FAMILIES[p["name"].rsplit("-", 1)[0]][2] for p in pools)
    return {**counts, "gpuPools": len(pools), "gpusRequested": sum(demand.values()), "quotaGpus": quota_gpus,
            "capacityGpus": capacity}


def _write_yaml(path: Path, document: dict, yaml) -> None:
    class NoAliases(yaml.SafeDumper):  # stack files refuse YAML aliases; write shared values out
        def ignore_aliases(self, data) -> bool:
            return True

    path.write_text(yaml.dump(document, Dumper=NoAliases, sort_keys=False, width=1000), encoding="utf-8")


# --- the measuring child ----------------------------------------------------------------------


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _checked(plan, planned_stack: str):
    """The plan, if it has no mandatory policy finding; InvalidBenchmark otherwise."""
    if plan.policy_rules == 0:
        raise InvalidBenchmark(f"stack {planned_stack} was planned without evaluating any policy rule")
    mandatory = [f for f in plan.findings if f["level"] == "mandatory"]
    if mandatory:
        shown = "\n".join(f"  - [{f['rule']}] {f['resourceType']} {f['resourceName']}: {f['message']}" for f in mandatory[:10])
        more = f"\n  ... and {len(mandatory) - 10} more" if len(mandatory) > 10 else ""
        raise InvalidBenchmark(f"generated stack {planned_stack} has {len(mandatory)} mandatory policy violation(s):\n{shown}{more}")
    return plan


def child(teams: int, per_team: int, keep: Path | None) -> dict:
    """Generate, plan, write and render one size in this (fresh) process; return the figures.

    InvalidBenchmark when a generated stack does not plan (invalid config, a failed cross-stack or
    quota check) or violates a mandatory policy rule."""
    started = time.perf_counter()
    sys.path.insert(0, str(REPO))
    import cloudml.plan as plan_module
    from cloudml.plan import Planner, StackConfigError, write_plan
    from components import render as render_module
    from components.platform_view import PlatformView
    from components.render import WorkloadContext, render
    from components.spec import TEAM_KEY, load_team
    from cloudml.stackfile import load_stack_file

    import_s = time.perf_counter() - started
    rss_after_imports = _rss_mib()

    # Planner.plan evaluates the policy rules (cloudml.plan.findings) on every stack it plans; time
    # that share on its own (it stays inside the plan's time).
    policy_seconds = {"platform": 0.0, "teams": 0.0}
    policy_target = ["platform"]
    evaluate_findings = plan_module.findings

    def timed_findings(*args, **kwargs):
        a = time.perf_counter()
        try:
            return evaluate_findings(*args, **kwargs)
        finally:
            policy_seconds[policy_target[0]] += time.perf_counter() - a

    plan_module.findings = timed_findings

    def plan_stack(planner, name: str):
        try:
            return _checked(planner.plan(name), name)
        except StackConfigError as error:
            raise InvalidBenchmark(f"generated stack {name} does not plan:\n{error}") from None

    with tempfile.TemporaryDirectory(prefix="cloudml-bench-") as tmp:
        root = keep if keep is not None else Path(tmp)
        stacks_dir, out_dir = root / "stacks", root / "out"
        stacks_dir.mkdir(parents=True, exist_ok=True)
        generated = generate_stacks(stacks_dir, teams, per_team)
        team_stacks = [f"team-{team_name(t)}" for t in range(teams)]

        # 1. the plan: platform once, then every team, each written like `cloudml plan` writes it
        planner = Planner(stacks_dir)
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        platform_plan = plan_stack(planner, PLATFORM_STACK)
        t1 = time.perf_counter()
        write_plan(platform_plan, out_dir)
        t2 = time.perf_counter()
        policy_target[0] = "teams"
        team_plan_s = team_write_s = 0.0
        resources = objects = advisory = warnings = 0
        for name in team_stacks:
            a = time.perf_counter()
            plan = plan_stack(planner, name)
            b = time.perf_counter()
            write_plan(plan, out_dir)
            c = time.perf_counter()
            team_plan_s += b - a
            team_write_s += c - b
            resources += len(plan.resources)
            objects += len(plan.objects)
            advisory += len(plan.findings)
            warnings += len(plan.warnings)
        t3 = time.perf_counter()
        plan_cpu_s = time.process_time() - cpu0
        written = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
        rss_after_plan = _rss_mib()
        plan_module.findings = evaluate_findings

        # 2. the pure render of the same workloads (specs loaded outside the timing)
        view = PlatformView.from_outputs(platform_plan.plain_outputs, f"organization/cloudml/{PLATFORM_STACK}")
        specs = [load_team(load_stack_file(stacks_dir, name).config.get(TEAM_KEY)) for name in team_stacks]
        render_module.environment.cache_clear()  # cold templates, as the plan had them
        r0 = time.perf_counter()
        rendered = 0
        for spec in specs:
            for w in spec.workloads:
                rendered += len(render(w.kind, WorkloadContext(spec, w, view)))
        render_s = time.perf_counter() - r0

    workloads = teams * per_team
    plan_s = t3 - t0
    policy_s = policy_seconds["platform"] + policy_seconds["teams"]
    return {
        "size": workloads,
        "teams": teams,
        "workloadsPerTeam": per_team,
        "workloads": workloads,
        "generated": generated,
        "planSeconds": plan_s,
        "planMsPerWorkload": 1000 * plan_s / workloads,
        "planCpuSeconds": plan_cpu_s,
        "platformPlanSeconds": t1 - t0,
        "platformWriteSeconds": t2 - t1,
        "teamPlanSeconds": team_plan_s,
        "teamWriteSeconds": team_write_s,
        "teamMsPerWorkload": 1000 * (team_plan_s + team_write_s) / workloads,
        "policySeconds": policy_s,
        "platformPolicySeconds": policy_seconds["platform"],
        "teamPolicySeconds": policy_seconds["teams"],
        "policyRules": platform_plan.policy_rules,
        "platformFindings": len(platform_plan.findings),  # advisory only: a mandatory one fails the run
        "teamFindings": advisory,
        "platformWarnings": len(platform_plan.warnings),
        "teamWarnings": warnings,
        "renderSeconds": render_s,
        "renderMsPerWorkload": 1000 * render_s / workloads,
        "planOverRender": plan_s / render_s if render_s else None,
        "teamResources": resources,
        "teamKubernetesObjects": objects,
        "renderedObjects": rendered,
        "bytesWritten": written,
        "importSeconds": import_s,
        "rssAfterImportsMiB": rss_after_imports,
        "rssAfterPlanMiB": rss_after_plan,
        "peakRssMiB": _rss_mib(),
    }


# --- the parent -------------------------------------------------------------------------------


def run_once(size: int, shape: tuple[int, int], keep: Path | None, timeout: float) -> dict:
    teams, per_team = shape
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(teams), str(per_team)]
    if keep is not None:
        command += ["--keep", str(keep / f"size-{size}")]
    wall = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"size": size, "teams": teams, "workloadsPerTeam": per_team, "error": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - wall
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        failed = {"size": size, "teams": teams, "workloadsPerTeam": per_team,
                  "error": f"child exited {done.returncode}: {(done.stderr.strip().splitlines() or ['?'])[-1]}"}
        if done.returncode == INVALID_EXIT:
            failed["invalid"] = True
        return failed
    result = json.loads(done.stdout)
    result["childWallSeconds"] = wall
    return result


def run_size(size: int, shape: tuple[int, int], keep: Path | None, timeout: float, repeat: int) -> dict:
    """Run one size `repeat` times, each in a fresh process; timings are the median of the runs,
    peak RSS the largest (the machine may be shared: one run can be slowed by other load)."""
    runs = []
    for _ in range(repeat):
        run = run_once(size, shape, keep, timeout)
        if "error" in run:
            return run
        runs.append(run)
    result = dict(runs[0])
    for key, value in runs[0].items():
        if key.endswith(("Seconds", "PerWorkload")) or key == "planOverRender":
            result[key] = statistics.median(r[key] for r in runs)
    result["peakRssMiB"] = max(r["peakRssMiB"] for r in runs)
    result["repeat"] = repeat
    result["runs"] = [{k: v for k, v in r.items() if k != "generated"} for r in runs]
    return result


def verdicts(results: dict[int, dict]) -> tuple[float | None, list[tuple[str, str, str]]]:
    """(growth ratio, [(target, measured, PASS|FAIL|n/a)])."""
    big, mid = results.get(1000), results.get(100)
    ok_big = big is not None and "error" not in big
    ratio = None
    if ok_big and mid is not None and "error" not in mid:
        ratio = big["planSeconds"] / mid["planSeconds"]
    lines = []

    def line(target: str, measured: float | None, limit: float, unit: str) -> None:
        if measured is None:
            lines.append((target, "not measured", "n/a"))
        else:
            lines.append((target, f"{measured:.2f}{unit}", "PASS" if measured <= limit else "FAIL"))

    line(f"plan 1000 workloads <= {TARGET_SECONDS_1000:.0f} s", big["planSeconds"] if ok_big else None, TARGET_SECONDS_1000, " s")
    line(f"peak RSS at 1000 <= {TARGET_RSS_MIB_1000 / 1024:.1f} GiB", big["peakRssMiB"] / 1024 if ok_big else None,
         TARGET_RSS_MIB_1000 / 1024, " GiB")
    line(f"time(1000)/time(100) <= {TARGET_GROWTH_1000_OVER_100:.0f}", ratio, TARGET_GROWTH_1000_OVER_100, "")
    return ratio, lines


def print_report(results: dict[int, dict]) -> None:
    header = ("size", "teams x wl", "plan s", "ms/wl", "plan CPU s", "platform s", "policy s", "render s", "render ms/wl",
              "plan/render", "peak RSS MiB")
    rows = []
    for size, r in results.items():
        if "error" in r:
            rows.append((str(size), f"{r['teams']}x{r['workloadsPerTeam']}", "FAILED", *[""] * 8))
            continue
        rows.append((
            str(size), f"{r['teams']}x{r['workloadsPerTeam']}", f"{r['planSeconds']:.2f}", f"{r['planMsPerWorkload']:.1f}",
            f"{r['planCpuSeconds']:.2f}", f"{r['platformPlanSeconds'] + r['platformWriteSeconds']:.2f}",
            f"{r['policySeconds']:.2f}", f"{r['renderSeconds']:.3f}",
            f"{r['renderMsPerWorkload']:.2f}", f"{r['planOverRender']:.0f}x", f"{r['peakRssMiB']:.0f}",
        ))
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)).rstrip())
    for size, r in results.items():
        if "error" in r:
            print(f"size {size} failed: {r['error']}")
    print()
    repeat = max((r.get("repeat", 1) for r in results.values()), default=1)
    print("plan s = platform plan+write once + every team plan+write (one Planner); ms/wl = plan s / workloads;")
    print("platform s = the platform's share of plan s; plan CPU s = process CPU time of the same step;")
    print("policy s = the policy rules' share of plan s (every stack; no mandatory violation, or the run stops);")
    print("render s = components.render.render of the same workloads (Jinja + YAML only, no Pulumi);")
    print(f"times are the median of {repeat} run(s) per size, each in a fresh process; peak RSS = ru_maxrss, the largest run.")
    ratio, lines = verdicts(results)
    print()
    print(f"time(1000)/time(100) = {ratio:.2f}" if ratio is not None else "time(1000)/time(100) = not measured")
    for target, measured, verdict in lines:
        print(f"{verdict:4}  {target} (measured {measured})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10,100,1000", help=f"comma-separated sizes among {', '.join(map(str, SHAPES))}")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the generated stacks and plans under DIR/size-<n>/")
    parser.add_argument("--repeat", type=int, default=3, help="runs per size, each in a fresh process; the median is reported")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one size may take before it counts as failed")
    parser.add_argument("--child", nargs=2, type=int, metavar=("TEAMS", "PER_TEAM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        try:
            figures = child(*args.child, args.keep)
        except InvalidBenchmark as error:
            sys.stderr.write(f"INVALID BENCHMARK: {error}\n")
            return INVALID_EXIT
        json.dump(figures, sys.stdout)
        return 0

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SHAPES]
    if unknown:
        parser.error(f"unknown size(s) {unknown}; choose from {sorted(SHAPES)}")
    print(f"cloudml plan scale benchmark: python {host.python_version()}, {os.cpu_count()} CPU(s), {host.platform()}")
    print()
    results: dict[int, dict] = {}
    for size in sizes:
        results[size] = run_size(size, SHAPES[size], args.keep, args.timeout, max(1, args.repeat))
        if results[size].get("invalid"):
            # The generator made a stack cloudml refuses (or a mandatory policy violation): whatever
            # was timed is not what the benchmark means to measure. Stop here, loudly.
            sys.stderr.write(f"\nplan_scale: size {size}: a generated stack is invalid or violates a mandatory "
                             "policy rule (see above); the benchmark measures nothing until the generator is fixed.\n")
            return INVALID_EXIT
    print_report(results)
    if args.json:
        ratio, lines = verdicts(results)
        document = {
            "benchmark": "plan_scale",
            "python": host.python_version(),
            "cpus": os.cpu_count(),
            "platform": host.platform(),
            "repeat": max(1, args.repeat),
            "shapes": {str(s): {"teams": SHAPES[s][0], "workloadsPerTeam": SHAPES[s][1]} for s in sizes},
            "targets": {"planSeconds1000": TARGET_SECONDS_1000, "peakRssMiB1000": TARGET_RSS_MIB_1000,
                        "growth1000Over100": TARGET_GROWTH_1000_OVER_100},
            "results": [results[s] for s in sizes],
            "growth1000Over100": ratio,
            "verdicts": [{"target": t, "measured": m, "verdict": v} for t, m, v in lines],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
        print(f"\nwrote {args.json}")
    # A measurement, not a test: the targets never fail the run; a failed plan does.
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
