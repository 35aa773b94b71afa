"""How `cloudml plan` scales with the number of workloads (a measurement, not a test).

For each size (10, 100 and 1000 workloads by default) a fresh Python process generates a platform
stack and N team stacks of M `training` workloads each into a temporary stacks directory, then:

1. plans the platform stack and every team stack with one `cloudml.plan.Planner` and writes each
   plan with `write_plan` into a temporary output directory (what `cloudml plan --all` does, minus
   the console report), timing the platform plan and the team plans separately;
2. renders the same workloads with `components.render.render` alone (Jinja + YAML, no Pulumi), with
   a cold template cache like the plan had, so the plan's overhead over pure rendering is visible;
3. reports its peak RSS (`ru_maxrss`, so one number per size).

The parent prints a table, the growth ratio time(1000)/time(100), PASS/FAIL against the targets,
and with `--json PATH` writes every figure. It exits 0 whatever the targets say; it exits nonzero
only when planning (or rendering) itself fails.

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
# GPU pools of the generated platform: name -> (instance types, capacity, GPU type, GPUs per node).
# The GPUs per node must match components/gpu_catalog.py (the spec rejects a mismatch).
POOLS = {
    "a10g": (["g5.12xlarge"], "on-demand", "a10g", 4),
    "l4-spot": (["g6.xlarge", "g6.2xlarge", "g6.4xlarge"], "spot", "l4", 1),
    "h100": (["p5.48xlarge"], "on-demand", "h100", 8),
}
GPU_PER_NODE = {gpu_type: per_node for _, _, gpu_type, per_node in POOLS.values()}
TEAM_BASES = ("vision", "nlp", "speech", "recsys", "search", "ads", "robotics", "genai", "fraud", "maps")
TASKS = ("resnet", "bert", "wav2vec", "dlrm", "t5", "vit", "gpt", "ctr", "detr", "unet")


# --- stack generation -------------------------------------------------------------------------


def team_name(t: int) -> str:
    """DNS-1123, at most 24 characters (spec.TeamName)."""
    return f"{TEAM_BASES[t % len(TEAM_BASES)]}-{t:02d}"


def workload(team: int, i: int, default_gpu_type: str) -> dict:
    """One realistic `training` workload; the mix is deterministic (seeded per team and index).

    About 40% ask for GPUs (1-8, never more than a node of their GPU type has; a quarter of those
    pick a GPU type other than the team default), the rest are CPU jobs; about a quarter of all
    workloads run on a schedule (CronJob).
    """
    rng = random.Random(f"{team}/{i}")
    task = TASKS[i % len(TASKS)]
    w: dict = {"kind": "training", "name": f"{task}-{i:04d}"}
    if rng.random() < 0.4:
        gpu_type = default_gpu_type
        if rng.random() < 0.25:
            gpu_type = rng.choice(sorted(GPU_PER_NODE))
            w["gpuType"] = gpu_type
        w["gpus"] = min(rng.choice((1, 1, 2, 4, 8)), GPU_PER_NODE[gpu_type])
        w["command"] = ["python", "-m", "cloudml_trainer"]
        w["args"] = ["--task", task, "--epochs", str(rng.choice((10, 30, 90))), "--batch-size", str(rng.choice((64, 128, 256)))]
        w["env"] = {"TF_CPP_MIN_LOG_LEVEL": "1", "NCCL_DEBUG": "WARN"}
        if rng.random() < 0.5:
            w["activeDeadline"] = rng.choice(("6h", "12h", "24h"))
    else:
        w["cpu"] = rng.choice(("2", "4", "8"))
        w["memory"] = rng.choice(("8Gi", "16Gi", "32Gi"))
        w["command"] = ["python", "-m", "cloudml_trainer", rng.choice(("prepare", "tokenize", "evaluate"))]
        w["args"] = ["--shards", str(rng.choice((16, 64, 256)))]
    if rng.random() < 0.25:
        w["schedule"] = rng.choice(("0 3 * * *", "30 1 * * 1", "@weekly", "*/30 * * * *"))
        w["backoffLimit"] = 1
    if rng.random() < 0.3:
        w["labels"] = {"example.com/cost-center": f"{team_name(team)}-research"}
    if rng.random() < 0.2:
        w["annotations"] = {"example.com/owner": f"{team_name(team)}: {task} #{i}"}
    if rng.random() < 0.2:
        w["ttlAfterFinished"] = "6h"
    return w


def generate_stacks(stacks_dir: Path, teams: int, per_team: int) -> dict:
    """Write Pulumi.platform-bench.yaml and Pulumi.team-<name>.yaml; return what was generated.

    Each team's gpuQuota is what its workloads request at once (at least 1), and each pool's max
    is sized so that the pools cover the sum of all quotas (no quota above capacity, which the
    spec rejects, and no oversubscription warning).
    """
    import yaml

    pool_of_type = {gpu_type: name for name, (_, _, gpu_type, _) in POOLS.items()}
    gpu_types = sorted(GPU_PER_NODE)
    demand = {gpu_type: 0 for gpu_type in gpu_types}
    quotas: dict[str, int] = {}
    counts = {"gpu": 0, "cpu": 0, "cron": 0}
    for t in range(teams):
        default_gpu_type = gpu_types[t % len(gpu_types)]
        workloads = [workload(t, i, default_gpu_type) for i in range(per_team)]
        for w in workloads:
            if w.get("gpus"):
                demand[w.get("gpuType", default_gpu_type)] += w["gpus"]
                counts["gpu"] += 1
            else:
                counts["cpu"] += 1
            counts["cron"] += "schedule" in w
        quotas[team_name(t)] = max(1, sum(w.get("gpus", 0) for w in workloads))
        team = {
            "config": {
                "cloudml:team": {
                    "name": team_name(t),
                    "platformStack": f"organization/cloudml/{PLATFORM_STACK}",
                    "defaults": {"image": IMAGE, "gpuType": default_gpu_type, "cpu": "8", "memory": "32Gi"},
                    "workloads": workloads,
                }
            }
        }
        _write_yaml(stacks_dir / f"Pulumi.team-{team_name(t)}.yaml", team, yaml)
    pools = []
    for gpu_type in gpu_types:
        name = pool_of_type[gpu_type]
        instance_types, capacity, _, per_node = POOLS[name]
        pools.append({
            "name": name, "instanceTypes": instance_types, "capacity": capacity, "min": 0,
            "max": max(1, math.ceil(demand[gpu_type] / per_node)),
        })
    platform = {
        "config": {
            "aws:region": "us-west-2",
            "cloudml:platform": {
                "name": "ml-bench",
                "kubernetesVersion": "1.31",
                "network": {"vpcCidr": "10.40.0.0/16", "availabilityZones": 3},
                "endpoint": {"publicAccessCidrs": []},
                "admins": ["arn:aws:iam::111122223333:role/platform-admins"],
                "systemPool": {"instanceType": "m6i.xlarge", "min": 2, "max": 4},
                "gpuPools": pools,
                "teams": {name: {"gpuQuota": quota, "cpuQuota": "512", "memoryQuota": "4Ti"} for name, quota in quotas.items()},
            },
        }
    }
    _write_yaml(stacks_dir / f"Pulumi.{PLATFORM_STACK}.yaml", platform, yaml)
    capacity = sum(p["max"] * POOLS[p["name"]][3] for p in pools)
    return {**counts, "gpusRequested": sum(demand.values()), "quotaGpus": sum(quotas.values()), "capacityGpus": capacity}


def _write_yaml(path: Path, document: dict, yaml) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=1000), encoding="utf-8")


# --- the measuring child ----------------------------------------------------------------------


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(teams: int, per_team: int, keep: Path | None) -> dict:
    """Generate, plan, write and render one size in this (fresh) process; return the figures."""
    started = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from cloudml.plan import Planner, write_plan
    from components import render as render_module
    from components.platform_view import PlatformView
    from components.render import WorkloadContext, render
    from components.spec import TEAM_KEY, load_team
    from cloudml.stackfile import load_stack_file

    import_s = time.perf_counter() - started
    rss_after_imports = _rss_mib()

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
        platform_plan = planner.plan(PLATFORM_STACK)
        t1 = time.perf_counter()
        write_plan(platform_plan, out_dir)
        t2 = time.perf_counter()
        team_plan_s = team_write_s = 0.0
        resources = objects = 0
        for name in team_stacks:
            a = time.perf_counter()
            plan = planner.plan(name)
            b = time.perf_counter()
            write_plan(plan, out_dir)
            c = time.perf_counter()
            team_plan_s += b - a
            team_write_s += c - b
            resources += len(plan.resources)
            objects += len(plan.objects)
        t3 = time.perf_counter()
        plan_cpu_s = time.process_time() - cpu0
        written = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
        rss_after_plan = _rss_mib()

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
        return {"size": size, "teams": teams, "workloadsPerTeam": per_team,
                "error": f"child exited {done.returncode}: {(done.stderr.strip().splitlines() or ['?'])[-1]}"}
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
    header = ("size", "teams x wl", "plan s", "ms/wl", "plan CPU s", "platform s", "render s", "render ms/wl",
              "plan/render", "peak RSS MiB")
    rows = []
    for size, r in results.items():
        if "error" in r:
            rows.append((str(size), f"{r['teams']}x{r['workloadsPerTeam']}", "FAILED", *[""] * 7))
            continue
        rows.append((
            str(size), f"{r['teams']}x{r['workloadsPerTeam']}", f"{r['planSeconds']:.2f}", f"{r['planMsPerWorkload']:.1f}",
            f"{r['planCpuSeconds']:.2f}", f"{r['platformPlanSeconds'] + r['platformWriteSeconds']:.2f}", f"{r['renderSeconds']:.3f}",
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
        json.dump(child(*args.child, args.keep), sys.stdout)
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
