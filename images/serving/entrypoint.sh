#!/bin/sh
# cloudml serving image entrypoint: tensorflow_model_server with cloudml's flags, then any given.
#
# In Kubernetes the modelService template sets the command itself (the same flags, from
# components/workloads/model_service.py server_flags) and mounts its ConfigMap over
# /cloudml/serving. Outside Kubernetes (`docker run`), this script gives the same server:
#   - /cloudml/serving/models.config if present (cloudml's model config), else one model from
#     MODEL_NAME (required then) at MODEL_BASE_PATH (default /cloudml/models/$MODEL_NAME);
#   - Prometheus metrics on the REST port (monitoring.config baked into the image);
#   - server-side batching with batching.config when CLOUDML_ENABLE_BATCHING=true.
set -eu
CONFIG_DIR="${CLOUDML_SERVING_CONFIG_DIR:-/cloudml/serving}"
MODELS_DIR="${CLOUDML_MODELS_DIR:-/cloudml/models}"

if [ -f "$CONFIG_DIR/models.config" ]; then
  model_flags="--model_config_file=$CONFIG_DIR/models.config --model_config_file_poll_wait_seconds=60"
else
  : "${MODEL_NAME:?set MODEL_NAME, or provide $CONFIG_DIR/models.config}"
  model_flags="--model_name=$MODEL_NAME --model_base_path=${MODEL_BASE_PATH:-$MODELS_DIR/$MODEL_NAME}"
fi
batching_flags=""
if [ "${CLOUDML_ENABLE_BATCHING:-false}" = "true" ]; then
  batching_flags="--enable_batching --batching_parameters_file=$CONFIG_DIR/batching.config"
fi

# shellcheck disable=SC2086  # the flag lists are split on purpose (no value contains a space)
exec tensorflow_model_server \
  --port=8500 \
  --rest_api_port=8501 \
  $model_flags \
  --file_system_poll_wait_seconds=30 \
  "--monitoring_config_file=$CONFIG_DIR/monitoring.config" \
  $batching_flags \
  "$@"
