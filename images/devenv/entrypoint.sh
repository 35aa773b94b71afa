#!/bin/sh
# cloudml dev environment entrypoint: run the given command (default `jupyter lab`, configured by
# /etc/jupyter/jupyter_server_config.py: token from JUPYTER_TOKEN, idle shutdown after
# CLOUDML_IDLE_TIMEOUT seconds). The devEnvironment template sets its own command with the same
# settings as flags, which replaces this entrypoint.
set -eu
if [ "$#" -eq 0 ]; then
  set -- jupyter lab
fi
exec "$@"
