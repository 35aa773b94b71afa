"""Pod Security Standards, `restricted` profile, as a pure function over a pod spec.

`restricted_violations(pod_spec)` returns one message per broken control, naming the field to set,
in the terms of the Kubernetes Pod Security Standards (pod-security-admission, policy version
latest): the baseline controls (host namespaces, privileged, capabilities, hostPath, hostPort,
AppArmor, SELinux, /proc mount, seccomp, sysctls) and the restricted ones (volume types, privilege
escalation, running as non-root, non-zero UID, seccomp profile, capabilities dropped). Used by the
tests of every workload template and by the policy pack.
"""

from __future__ import annotations

from typing import Any

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
    out = []
    for field in ("initContainers", "containers", "ephemeralContainers"):
        for i, container in enumerate(spec.get(field) or []):
            out.append((f"{field}[{i}] ({container.get('name', '?')})", container))
    return out


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    """Every Pod Security `restricted` control this pod spec breaks ([] when it passes)."""
    problems: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(field):
            problems.append(f"spec.{field} is true; host namespaces are not allowed: remove it")
    for i, volume in enumerate(spec.get("volumes") or []):
        sources = [k for k in volume if k != "name"]
        bad = [s for s in sources if s not in ALLOWED_VOLUME_SOURCES]
        if bad:
            problems.append(
                f"spec.volumes[{i}] ({volume.get('name', '?')}) uses {', '.join(bad)}; allowed volume types: "
                f"{', '.join(ALLOWED_VOLUME_SOURCES)}"
            )
    for i, sysctl in enumerate(pod_sc.get("sysctls") or []):
        if sysctl.get("name") not in SAFE_SYSCTLS:
            problems.append(f"spec.securityContext.sysctls[{i}] sets {sysctl.get('name')}, which is not a safe sysctl: remove it")
    problems += _selinux(pod_sc, "spec.securityContext")
    problems += _apparmor(pod_sc, "spec.securityContext")
    pod_non_root = pod_sc.get("runAsNonRoot") is True
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_sc.get("runAsUser") == 0:
        problems.append("spec.securityContext.runAsUser is 0 (root): set a non-zero UID")
    if pod_seccomp is not None and pod_seccomp not in ALLOWED_SECCOMP:
        problems.append(f"spec.securityContext.seccompProfile.type is {pod_seccomp}: set RuntimeDefault or Localhost")
    for where, container in _containers(spec):
        sc = container.get("securityContext") or {}
        at = f"spec.{where}.securityContext"
        if sc.get("privileged"):
            problems.append(f"{at}.privileged is true: remove it")
        if sc.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{at}.allowPrivilegeEscalation is not set to false: set it to false")
        if sc.get("runAsNonRoot") is False or (not pod_non_root and sc.get("runAsNonRoot") is not True):
            problems.append(f"{at}.runAsNonRoot is not true (neither here nor in the pod's securityContext): set it to true")
        if sc.get("runAsUser") == 0:
            problems.append(f"{at}.runAsUser is 0 (root): set a non-zero UID")
        seccomp = (sc.get("seccompProfile") or {}).get("type")
        if seccomp is not None and seccomp not in ALLOWED_SECCOMP:
            problems.append(f"{at}.seccompProfile.type is {seccomp}: set RuntimeDefault or Localhost")
        elif seccomp is None and pod_seccomp is None:
            problems.append(f"{at}.seccompProfile is not set (neither here nor in the pod's securityContext): set type RuntimeDefault")
        capabilities = sc.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"{at}.capabilities.drop does not contain ALL: drop ALL")
        added = [c for c in capabilities.get("add") or [] if c != ALLOWED_ADDED_CAPABILITY]
        if added:
            problems.append(f"{at}.capabilities.add adds {', '.join(added)}: add at most {ALLOWED_ADDED_CAPABILITY}")
        if sc.get("procMount") not in (None, "Default"):
            problems.append(f"{at}.procMount is {sc['procMount']}: remove it")
        problems += _selinux(sc, at)
        problems += _apparmor(sc, at)
        for j, port in enumerate(container.get("ports") or []):
            if port.get("hostPort"):
                problems.append(f"spec.{where}.ports[{j}].hostPort is set: host ports are not allowed, remove it")
    return problems


def _selinux(sc: dict, at: str) -> list[str]:
    options = sc.get("seLinuxOptions") or {}
    problems = []
    if options.get("type", "") not in ALLOWED_SELINUX_TYPES:
        problems.append(f"{at}.seLinuxOptions.type is {options['type']}: use a container type or remove it")
    if options.get("user") or options.get("role"):
        problems.append(f"{at}.seLinuxOptions sets user or role: remove them")
    return problems


def _apparmor(sc: dict, at: str) -> list[str]:
    profile = (sc.get("appArmorProfile") or {}).get("type")
    if profile == "Unconfined":
        return [f"{at}.appArmorProfile.type is Unconfined: use RuntimeDefault or Localhost"]
    return []
