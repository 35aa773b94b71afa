"""Pulumi entry point: `pulumi up` runs the cloudml program for the selected stack."""

import pulumi

from components.errors import ConfigError
from components.program import run

try:
    run()
except ConfigError as error:
    # RunError prints the message without a Python traceback: config mistakes are not crashes.
    raise pulumi.RunError(error.render()) from None
