"""kind: sweep — a hyperparameter search as one Indexed Job, one completion index per trial.

The trials are computed here, in Python, before anything is rendered (pure and deterministic: the
same config always gives the same trials in the same order), and written to a ConfigMap
`<name>-trials` with one key `<index>.json` per trial. Every pod of the Job mounts it read-only at
/cloudml/trial and finds its own file through its completion index:

    CLOUDML_TRIAL_INDEX   the pod's index (downward API)
    CLOUDML_TRIAL_PARAMS  /cloudml/trial/<index>.json   e.g. {"learning_rate":0.01,"batch_size":256}
    CLOUDML_METRICS_DIR   s3://<logs bucket>/<team>/sweeps/<name>/ — the trial writes <index>.json there

Checkpoint and log directories are per trial (…/<run>/trial-<index>/): parallel trials must not
resume from each other's checkpoints, and TensorBoard pointed at the sweep's log directory shows
each trial as its own run, side by side.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from typing import Any

from components.render import RenderError, WorkloadContext, bucket_uri
from components.spec import SweepWorkload, trials_config_map_name
from components.workloads.common import field_env, run_env

# The Job controller writes each pod's completion index into this annotation (Indexed Jobs).
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
TRIALS_MOUNT_PATH = "/cloudml/trial"
TRIALS_VOLUME = "trials"
TRIAL_INDEX_ENV = "CLOUDML_TRIAL_INDEX"
# On the pod template: a Job's template cannot change in place, so new trials replace the Job
# instead of letting a running sweep's later pods read a ConfigMap its earlier pods never saw.
TRIALS_HASH_ANNOTATION = "cloudml.io/trials-sha256"
# run_env's directories that become per trial.
PER_TRIAL_DIRS = ("CLOUDML_CHECKPOINT_DIR", "CLOUDML_LOG_DIR")


def grid_trials(parameters: dict[str, list]) -> list[dict[str, Any]]:
    """Every combination, in the declared parameter order: the first parameter varies slowest."""
    names = list(parameters)
    return [dict(zip(names, values)) for values in itertools.product(*parameters.values())]


def random_trials(parameters: dict[str, list], trials: int, seed: int) -> list[dict[str, Any]]:
    """`trials` samples, each taking one value per parameter (in declared order) from
    random.Random(seed), so the same seed draws the same trials.

    A draw that repeats an earlier combination is discarded and drawn again as long as some
    combination has not been drawn yet; once every combination is in, further trials may repeat
    combinations (a noisy objective may be worth measuring twice). Combinations are told apart by the positions
    of their values, not by equality, so 1, 1.0 and true in one list are three values.
    """
    rng = random.Random(seed)
    names = list(parameters)
    grid_size = math.prod(len(values) for values in parameters.values())
    seen: set[tuple[int, ...]] = set()
    samples = []
    while len(samples) < trials:
        positions = tuple(rng.randrange(len(parameters[name])) for name in names)
        if positions in seen and len(seen) < grid_size:
            continue
        seen.add(positions)
        samples.append({name: parameters[name][i] for name, i in zip(names, positions)})
    return samples


def trials_of(workload: SweepWorkload) -> list[dict[str, Any]]:
    """The parameters of every trial, by completion index."""
    if workload.algorithm == "grid":
        trials = grid_trials(workload.parameters)
    else:
        trials = random_trials(workload.parameters, workload.trials, workload.seed)
    if len(trials) != workload.trial_count():  # the Job's completions must match the ConfigMap
        raise RenderError(f"sweep {workload.name}: {len(trials)} trials computed, {workload.trial_count()} expected")
    return trials


def trial_file(params: dict[str, Any]) -> str:
    """A trial's parameters as compact JSON; ints stay ints, floats floats, booleans booleans."""
    try:
        return json.dumps(params, separators=(",", ":"), allow_nan=False)
    except ValueError as error:  # NaN/Infinity have no JSON form a trainer could read
        raise RenderError(f"cannot write the sweep parameters {params!r} as JSON: {error}") from None


def trial_files(workload: SweepWorkload) -> dict[str, str]:
    """The trials ConfigMap's data: `<index>.json` -> that trial's parameters."""
    return {f"{i}.json": trial_file(params) for i, params in enumerate(trials_of(workload))}


def trials_config_bytes(workload: SweepWorkload) -> int:
    """Bytes of the trials ConfigMap's data (keys and values, UTF-8): what the 1 MiB limit of a
    Kubernetes object counts (the contract refuses a sweep above spec.MAX_SWEEP_CONFIG_BYTES)."""
    return sum(len(key.encode()) + len(value.encode()) for key, value in trial_files(workload).items())


def values(context: WorkloadContext, shared: dict[str, Any]) -> dict[str, Any]:
    workload: SweepWorkload = context.workload
    team, name = context.team.name, workload.name
    index = f"$({TRIAL_INDEX_ENV})"
    trial_env = [
        field_env(TRIAL_INDEX_ENV, f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"),
        {"name": "CLOUDML_TRIAL_PARAMS", "value": f"{TRIALS_MOUNT_PATH}/{index}.json"},
        {"name": "CLOUDML_METRICS_DIR", "value": bucket_uri(context.platform, "logs", team, "sweeps", name)},
    ]
    run = [
        {**var, "value": f"{var['value']}trial-{index}/"} if var["name"] in PER_TRIAL_DIRS else var
        for var in run_env(context)
    ]
    files = trial_files(workload)
    trials_hash = hashlib.sha256(json.dumps(files).encode()).hexdigest()
    config_map = trials_config_map_name(name)
    return {
        **shared,
        "env": trial_env + run + shared["env"],
        "trials_config_map": config_map,
        "trial_files": files,
        "completions": len(files),
        "pod_annotations": {**shared["annotations"], TRIALS_HASH_ANNOTATION: trials_hash},
        "pod_volumes": [*shared["pod_volumes"], {"name": TRIALS_VOLUME, "configMap": {"name": config_map}}],
        "volume_mounts": [*shared["volume_mounts"], {"name": TRIALS_VOLUME, "mountPath": TRIALS_MOUNT_PATH, "readOnly": True}],
    }
