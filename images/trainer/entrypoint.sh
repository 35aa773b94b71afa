#!/bin/sh
# cloudml trainer image entrypoint: `docker run <image> --task reference --steps 100` trains,
# `docker run <image> predict --model-dir ...` predicts. Kubernetes workloads set their own
# `command` (python -m cloudml_trainer ...), which replaces this entrypoint.
set -eu
exec python -m cloudml_trainer "$@"
