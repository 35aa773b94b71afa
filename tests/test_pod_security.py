"""`policies.pod_security.restricted_violations`, control by control: a compliant pod passes, and each
minimal mutation that breaks one Pod Security `restricted` control yields exactly one message that
names the field and the fix."""

from __future__ import annotations

import copy

import pytest

from policies.pod_security import restricted_violations

RESTRICTED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
COMPLIANT = {
    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
    "initContainers": [{"name": "side", "image": "x:1", "restartPolicy": "Always", "securityContext": copy.deepcopy(RESTRICTED)}],
    "containers": [{"name": "main", "image": "x:1", "securityContext": copy.deepcopy(RESTRICTED), "ports": [{"containerPort": 8500}]}],
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "d"}}, {"name": "cfg", "configMap": {"name": "c"}}],
}
MAIN = "spec.containers[0] (main).securityContext"


def mutated(change) -> dict:
    pod = copy.deepcopy(COMPLIANT)
    change(pod)
    return pod


def test_compliant_pod_passes():
    assert restricted_violations(COMPLIANT) == []


def test_container_level_settings_can_replace_the_pods():
    """runAsNonRoot and seccomp may be set on every container instead of the pod."""
    def move(pod):
        pod["securityContext"] = {}
        for c in pod["initContainers"] + pod["containers"]:
            c["securityContext"].update(runAsNonRoot=True, seccompProfile={"type": "Localhost", "localhostProfile": "p"})
    assert restricted_violations(mutated(move)) == []


ROWS = [
    (lambda p: p.__setitem__("hostNetwork", True), "spec.hostNetwork is true; host namespaces are not allowed: remove it"),
    (lambda p: p.__setitem__("hostPID", True), "spec.hostPID is true; host namespaces are not allowed: remove it"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
     "spec.volumes[2] (h) uses hostPath, not an allowed volume type: remove it or use an allowed type: configMap, csi, "
     "downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, projected, secret"),
    (lambda p: p["securityContext"].__setitem__("windowsOptions", {"hostProcess": True}),
     "spec.securityContext.windowsOptions.hostProcess is true; Windows HostProcess containers are not allowed: remove it"),
    (lambda p: p["containers"][0]["securityContext"].__setitem__("windowsOptions", {"hostProcess": True}),
     f"{MAIN}.windowsOptions.hostProcess is true; Windows HostProcess containers are not allowed: remove it"),
    (lambda p: p["initContainers"][0]["securityContext"].__setitem__("windowsOptions", {"hostProcess": True, "runAsUserName": "x"}),
     "spec.initContainers[0] (side).securityContext.windowsOptions.hostProcess is true; Windows HostProcess containers are "
     "not allowed: remove it"),
    (lambda p: p["containers"][0]["securityContext"].__setitem__("privileged", True), f"{MAIN}.privileged is true: remove it"),
    (lambda p: p["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
     f"{MAIN}.allowPrivilegeEscalation is not set to false: set it to false"),
    (lambda p: p["initContainers"][0]["securityContext"].__setitem__("allowPrivilegeEscalation", True),
     "spec.initContainers[0] (side).securityContext.allowPrivilegeEscalation is not set to false: set it to false"),
    (lambda p: p["containers"][0]["securityContext"].__setitem__("runAsNonRoot", False),
     f"{MAIN}.runAsNonRoot is not true (neither here nor in the pod's securityContext): set it to true"),
    (lambda p: p["securityContext"].__setitem__("runAsUser", 0), "spec.securityContext.runAsUser is 0 (root): set a non-zero UID"),
    (lambda p: p["containers"][0]["securityContext"].__setitem__("runAsUser", 0), f"{MAIN}.runAsUser is 0 (root): set a non-zero UID"),
    (lambda p: p["containers"][0]["securityContext"].__setitem__("seccompProfile", {"type": "Unconfined"}),
     f"{MAIN}.seccompProfile.type is Unconfined: set RuntimeDefault or Localhost"),
    (lambda p: p["containers"][0]["securityContext"].__setitem__("capabilities", {"drop": ["NET_RAW"]}),
     f"{MAIN}.capabilities.drop does not contain ALL: drop ALL"),
    (lambda p: p["containers"][0]["securityContext"]["capabilities"].__setitem__("add", ["SYS_ADMIN", "NET_BIND_SERVICE"]),
     f"{MAIN}.capabilities.add adds SYS_ADMIN: add at most NET_BIND_SERVICE"),
    (lambda p: p["containers"][0]["ports"][0].__setitem__("hostPort", 8500),
     "spec.containers[0] (main).ports[0].hostPort is set; host ports are not allowed: remove it"),
    (lambda p: p["containers"][0]["securityContext"].__setitem__("procMount", "Unmasked"), f"{MAIN}.procMount is Unmasked: remove it"),
    (lambda p: p["containers"][0]["securityContext"].__setitem__("appArmorProfile", {"type": "Unconfined"}),
     f"{MAIN}.appArmorProfile.type is Unconfined: use RuntimeDefault or Localhost"),
    (lambda p: p["securityContext"].__setitem__("seLinuxOptions", {"type": "spc_t"}),
     "spec.securityContext.seLinuxOptions.type is spc_t: use a container type or remove it"),
    (lambda p: p["securityContext"].__setitem__("sysctls", [{"name": "kernel.msgmax", "value": "1"}]),
     "spec.securityContext.sysctls[0] sets kernel.msgmax, which is not a safe sysctl: remove it"),
]


@pytest.mark.parametrize(("change", "expected"), ROWS, ids=[r[1].split(" ")[0] + "-" + str(i) for i, r in enumerate(ROWS)])
def test_each_broken_control_is_named_with_its_fix(change, expected):
    assert restricted_violations(mutated(change)) == [expected]


@pytest.mark.parametrize("options", [{}, {"hostProcess": False}, {"gmsaCredentialSpecName": "spec", "runAsUserName": "app"},
                                     {"hostProcess": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"},  # unknown in a preview
                                     "dd056dcd-154b-4c76-9bd3-c8f88648b5ff"])
def test_windows_options_without_host_process_pass(options):
    """Only hostProcess true breaks the HostProcess control (baseline: undefined, nil or false)."""
    def set_options(pod):
        pod["securityContext"]["windowsOptions"] = options
        pod["containers"][0]["securityContext"]["windowsOptions"] = options
    assert restricted_violations(mutated(set_options)) == []
