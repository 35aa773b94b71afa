"""Per-kind values of the workload templates.

Each module's `values(context, shared)` takes the values every template shares
(`components.render.resolve`) and returns them with the kind's own added: its default image and
command, the environment cloudml provides, its extra volumes, ports and probes. The templates in
`templates/workloads/<kind>.yaml.j2` turn them into Kubernetes objects.
"""

from __future__ import annotations

from components.workloads import batch_prediction, dev_environment, distributed, model_service, sweep, tensorboard, training

KIND_VALUES = {
    "training": training.values,
    "distributedTraining": distributed.values,
    "modelService": model_service.values,
    "devEnvironment": dev_environment.values,
    "sweep": sweep.values,
    "batchPrediction": batch_prediction.values,
    "tensorboard": tensorboard.values,
}
