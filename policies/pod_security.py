"""Pod Security Standards, `restricted` profile, as a pure function over a pod spec.

`restricted_violations(pod_spec)` returns one message per broken control, in the terms of the
Kubernetes Pod Security Standards (pod-security-admission, policy version latest): the baseline
controls (host namespaces, Windows HostProcess, privileged, capabilities, hostPath, hostPort,
AppArmor, SELinux, /proc mount, seccomp, sysctls) and the restricted ones (volume types, privilege
escalation, running as non-root, non-zero UID, seccomp profile, capabilities dropped). Each message
is `<field and what is wrong>: <what to do>`, the second part starting with a verb (set, remove,
drop, add, use), which the policy pack turns into the finding's fix. Used by the tests of every
workload template and by the policy pack.
"""

from __future__ import annotations

from typing import Any

from policies.core import containers, is_unknown, items, mapping

ALLOWED_VOLUME_SOURCES = (
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
)
ALLOWED_ADDED_CAPABILITY = "NET_BIND_SERVICE"
ALLOWED_SECCOMP = ("RuntimeDefault", "Localhost")
ALLOWED_SELINUX_TYPES = ("", "container_t", "container_init_t", "container_kvm_t", "container_engine_t")
# Sysctls the baseline profile allows (namespaced and isolated from the node).
SAFE_SYSCTLS = (
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
)


def _containers(spec: dict) -> list[tuple[str, dict]]:
    """policies.core.containers, each path with the container's name: `containers[0] (main)`."""
    return [(f"{where} ({container.get('name', '?')})", container) for where, container in containers(spec)]


def _set(value: Any) -> bool:
    """Truthy and known: a field a preview does not know yet is not judged (see policies.core)."""
    return bool(value) and not is_unknown(value)


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Every Pod Security `restricted` control this pod spec breaks ([] when it passes). A field
    whose value is unknown (a preview's sentinel) is not judged, nor are the controls it decides."""
    problems: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    pod_sc_unknown = is_unknown(pod_sc)
    if pod_sc_unknown:
        pod_sc = {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if _set(spec.get(field)):
            problems.append(f"spec.{field} is true; host namespaces are not allowed: remove it")
    problems += _host_process(pod_sc, "spec.securityContext")
    for i, volume in enumerate(items(spec.get("volumes"))):
        if is_unknown(volume):
            continue
        sources = [k for k in volume if k != "name"]
        bad = [s for s in sources if s not in ALLOWED_VOLUME_SOURCES]
        if bad:
            problems.append(
                f"spec.volumes[{i}] ({volume.get('name', '?')}) uses {', '.join(bad)}, not an allowed volume type: "
                f"remove it or use an allowed type: {', '.join(ALLOWED_VOLUME_SOURCES)}"
            )
    for i, sysctl in enumerate(items(pod_sc.get("sysctls"))):
        if not is_unknown(sysctl) and not is_unknown(sysctl.get("name")) and sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"spec.securityContext.sysctls[{i}] sets {sysctl.get('name')}, which is not a safe sysctl: remove it")
    problems += _selinux(pod_sc, "spec.securityContext")
    problems += _apparmor(pod_sc, "spec.securityContext")
    pod_non_root = pod_sc.get("runAsNonRoot")
    pod_seccomp = _seccomp(pod_sc)
    # What the pod's securityContext leaves unknown, a container that does not set it inherits.
    pod_non_root_unknown = pod_sc_unknown or is_unknown(pod_non_root)
    pod_seccomp_unknown = pod_sc_unknown or is_unknown(pod_seccomp)
    if pod_sc.get("runAsUser") == 0:
        problems.append("spec.securityContext.runAsUser is 0 (root): set a non-zero UID")
    if pod_seccomp is not None and not pod_seccomp_unknown and pod_seccomp not in ALLOWED_SECCOMP:
        problems.append(f"spec.securityContext.seccompProfile.type is {pod_seccomp}: set RuntimeDefault or Localhost")
    for where, container in _containers(spec):
        sc = container.get("securityContext") or {}
        at = f"spec.{where}.securityContext"
        if is_unknown(sc):
            problems += _host_ports(where, container)
            continue
        if _set(sc.get("privileged")):
            problems.append(f"{at}.privileged is true: remove it")
        problems += _host_process(sc, at)
        escalation = sc.get("allowPrivilegeEscalation")
        if escalation is not False and not is_unknown(escalation):
            problems.append(f"{at}.allowPrivilegeEscalation is not set to false: set it to false")
        non_root = sc.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root_unknown and pod_non_root is not True):
            problems.append(f"{at}.runAsNonRoot is not true (neither here nor in the pod's securityContext): set it to true")
        if sc.get("runAsUser") == 0:
            problems.append(f"{at}.runAsUser is 0 (root): set a non-zero UID")
        seccomp = _seccomp(sc)
        if is_unknown(seccomp):
            pass
        elif seccomp is not None and seccomp not in ALLOWED_SECCOMP:
            problems.append(f"{at}.seccompProfile.type is {seccomp}: set RuntimeDefault or Localhost")
        elif seccomp is None and pod_seccomp is None and not pod_seccomp_unknown:
            problems.append(f"{at}.seccompProfile is not set (neither here nor in the pod's securityContext): set type RuntimeDefault")
        capabilities = sc.get("capabilities") or {}
        drop = {} if is_unknown(capabilities) else capabilities.get("drop")
        if not is_unknown(capabilities) and not is_unknown(drop) and not any(is_unknown(c) for c in items(drop)) \
                and "ALL" not in items(drop):
            problems.append(f"{at}.capabilities.drop does not contain ALL: drop ALL")
        added = [] if is_unknown(capabilities) else items(capabilities.get("add"))
        added = [c for c in added if c != ALLOWED_ADDED_CAPABILITY and not is_unknown(c)]
        if added:
            problems.append(f"{at}.capabilities.add adds {', '.join(added)}: add at most {ALLOWED_ADDED_CAPABILITY}")
        if sc.get("procMount") not in (None, "Default") and not is_unknown(sc.get("procMount")):
            problems.append(f"{at}.procMount is {sc['procMount']}: remove it")
        problems += _selinux(sc, at)
        problems += _apparmor(sc, at)
        problems += _host_ports(where, container)
    return problems


def _host_ports(where: str, container: dict) -> list[str]:
    return [f"spec.{where}.ports[{j}].hostPort is set; host ports are not allowed: remove it"
            for j, port in enumerate(items(container.get("ports"))) if not is_unknown(port) and _set(port.get("hostPort"))]


def _host_process(sc: dict, at: str) -> list[str]:
    """Baseline: Windows HostProcess containers (full access to the Windows node) are not allowed,
    at the pod's or a container's securityContext.windowsOptions."""
    options = sc.get("windowsOptions")
    if is_unknown(options) or not _set(mapping(options).get("hostProcess")):
        return []
    return [f"{at}.windowsOptions.hostProcess is true; Windows HostProcess containers are not allowed: remove it"]


def _seccomp(sc: dict) -> Any:
    """The seccompProfile type (None when not set; the sentinel when unknown)."""
    profile = sc.get("seccompProfile") or {}
    return profile if is_unknown(profile) else profile.get("type")


def _selinux(sc: dict, at: str) -> list[str]:
    options = sc.get("seLinuxOptions") or {}
    if is_unknown(options):
        return []
    problems = []
    if options.get("type", "") not in ALLOWED_SELINUX_TYPES and not is_unknown(options.get("type")):
        problems.append(f"{at}.seLinuxOptions.type is {options['type']}: use a container type or remove it")
    if _set(options.get("user")) or _set(options.get("role")):
        problems.append(f"{at}.seLinuxOptions sets user or role: remove them")
    return problems


def _apparmor(sc: dict, at: str) -> list[str]:
    profile = sc.get("appArmorProfile") or {}
    profile = None if is_unknown(profile) else profile.get("type")
    if profile == "Unconfined":
        return [f"{at}.appArmorProfile.type is Unconfined: use RuntimeDefault or Localhost"]
    return []
