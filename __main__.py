"""Pulumi entry point: `pulumi up` runs the cloudml program for the selected stack."""

from components.program import run

run()
