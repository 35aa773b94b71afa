"""GPUs: what the pod was given against what TensorFlow sees, so a GPU pod never trains on CPU by
accident.

A TensorFlow GPU image whose CUDA/cuDNN libraries do not match its TensorFlow build (or the node's
driver) does not fail: TensorFlow logs "Cannot dlopen some GPU libraries ... Skipping registering
GPU devices" and carries on with the CPU only — a training run 10-100x slower that looks healthy.
The NVIDIA device plugin tells the container which GPUs it was allocated through
NVIDIA_VISIBLE_DEVICES (GPU UUIDs or indices with the default `envvar` strategy, a directory under
/var/run with `volume-mounts`). When that names devices and TensorFlow sees none, the trainer exits
at once with DEVICE_EXIT_CODE and says why, unless CLOUDML_ALLOW_CPU_FALLBACK=1.

Not an allocation: unset, empty, `void` and `none` (no GPU), and `all` — the ENV of the CUDA base
images (tensorflow/tensorflow:*-gpu included), present in every pod of the image, GPU or not; the
device plugin itself never writes `all`. (With the plugin's CDI strategy the variable is not set
per pod, so this check cannot see an allocation there.)
"""

from __future__ import annotations

import os
from typing import Mapping

VISIBLE_DEVICES_ENV = "NVIDIA_VISIBLE_DEVICES"
ALLOW_CPU_FALLBACK_ENV = "CLOUDML_ALLOW_CPU_FALLBACK"
NOT_ALLOCATED = ("", "void", "none", "all")
DEVICE_EXIT_CODE = 3  # distinct from argument errors (2), so a pod failure policy can tell it apart


class DeviceError(RuntimeError):
    """The pod was given GPUs that TensorFlow cannot use."""


def allocated_gpus(environ: Mapping[str, str] | None = None) -> list[str]:
    """The GPUs the device plugin gave this container (empty: none, or not known)."""
    environ = os.environ if environ is None else environ
    value = environ.get(VISIBLE_DEVICES_ENV, "").strip()
    if value.lower() in NOT_ALLOCATED:
        return []
    return [v.strip() for v in value.split(",") if v.strip()]


def check_gpus(visible: int, environ: Mapping[str, str] | None = None) -> dict:
    """{"gpus": visible, "gpus_allocated": n}; DeviceError when GPUs were allocated and TensorFlow
    sees none (and CPU fallback is not allowed)."""
    environ = os.environ if environ is None else environ
    allocated = allocated_gpus(environ)
    allow = environ.get(ALLOW_CPU_FALLBACK_ENV, "").strip().lower() in ("1", "true", "yes")
    if allocated and visible == 0 and not allow:
        raise DeviceError(
            f"this pod was given GPUs ({VISIBLE_DEVICES_ENV}={environ[VISIBLE_DEVICES_ENV]}) but TensorFlow sees none, "
            "so training would silently run on the CPU. Usually the image's CUDA/cuDNN libraries do not match its "
            "TensorFlow build or the node's NVIDIA driver: look for 'Cannot dlopen some GPU libraries' in the log "
            f"above. To train on the CPU anyway, set {ALLOW_CPU_FALLBACK_ENV}=1."
        )
    return {"gpus": visible, "gpus_allocated": len(allocated)}


def visible_gpus() -> int:
    """Physical GPUs TensorFlow registered (does not initialize the runtime, so a strategy can
    still be created afterwards)."""
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


def gpu_report(environ: Mapping[str, str] | None = None) -> dict:
    return check_gpus(visible_gpus(), environ)
