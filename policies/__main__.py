"""The CrossGuard policy pack: what `pulumi preview --policy-pack policies` runs.

Constructing `PolicyPack` starts the analyzer's gRPC server and blocks forever, so this module does
nothing else and nothing imports it; the policies are built by `policies.pack.policies()` from
`policies.rules.RULES` (tested by calling their validate functions). Configuration comes from
`--policy-pack-config` (generate it from a settings file: `python -m policies.settings FILE`).
"""

import sys
from pathlib import Path

# Pulumi starts the pack with policies/ first on sys.path; the repository root makes `policies.*`
# importable even when the venv's install of cloudml is not an editable one.
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policies import pack  # noqa: E402

PolicyPack(
    name="cloudml",
    # Every policy carries its rule's level; this default only applies to a policy without one.
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=pack.policies(),
)
