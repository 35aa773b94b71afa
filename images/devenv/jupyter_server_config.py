"""Jupyter Server configuration of cloudml's dev environment (installed at /etc/jupyter/, read by
every `jupyter lab` in the image; command-line flags still win over it).

- Idle shutdown: with CLOUDML_IDLE_TIMEOUT (seconds; the devEnvironment template sets it from
  `idleTimeout`), kernels idle that long are culled even with a browser tab attached, inactive
  terminals too, and the server exits once it has had no kernels, terminals or API activity for that
  long. The Job then completes and its GPU returns to the pool. These are the same settings the
  template passes as flags (components/workloads/dev_environment.py jupyter_command), so a server
  started without them (`docker run`) idles out the same way.
- Token: JUPYTER_TOKEN (the template fills it from the workload's Secret), never the command line.
  Without it the server refuses to start rather than run unauthenticated or print a token to logs.
"""

import os

c = get_config()  # noqa: F821  (provided by Jupyter when it loads this file)

CULL_INTERVAL_SECONDS = 60

c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.allow_root = False
c.ServerApp.root_dir = os.environ.get("HOME", "/home/cloudml")

_token = os.environ.get("JUPYTER_TOKEN", "")
if not _token:
    raise SystemExit("cloudml devenv: JUPYTER_TOKEN is not set; refusing to start without a token")
c.IdentityProvider.token = _token

_idle = os.environ.get("CLOUDML_IDLE_TIMEOUT", "").strip()
if _idle:
    timeout = int(_idle)
    if timeout <= 0:
        raise SystemExit(f"cloudml devenv: CLOUDML_IDLE_TIMEOUT must be a positive number of seconds, got {_idle!r}")
    interval = min(CULL_INTERVAL_SECONDS, timeout)
    c.ServerApp.shutdown_no_activity_timeout = timeout
    c.MappingKernelManager.cull_idle_timeout = timeout
    c.MappingKernelManager.cull_interval = interval
    c.MappingKernelManager.cull_connected = True
    c.MappingKernelManager.cull_busy = False
    c.TerminalManager.cull_inactive_timeout = timeout
    c.TerminalManager.cull_interval = interval
