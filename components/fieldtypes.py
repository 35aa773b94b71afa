"""Constrained value types of the stack contract, each with a message that says how to fix it.

Every check raises `problem(message, fix)`, which `components.errors.from_pydantic` turns into a
ConfigProblem naming the config path and the bad value.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, Field, Strict
from pydantic_core import PydanticCustomError

DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NVIDIA_ENV_PREFIX = "NVIDIA_"
_CPU = re.compile(r"(\d+(\.\d{1,3})?|\d+m)")
_MEMORY = re.compile(r"\d+(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")
# A container image reference: [registry[:port]/]path[:tag][@sha256:digest]
_IMAGE = re.compile(
    r"([a-z0-9.-]+(:\d+)?/)?[a-z0-9]+([._/-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?"
)
_IAM_PRINCIPAL = re.compile(r"arn:aws(-[a-z]+)*:iam::\d{12}:(role|user)/[A-Za-z0-9+=,.@_/-]+")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_DURATION_PART = re.compile(r"(\d+)([smhd])")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,?-]+")
_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_RESERVED_LABEL_PREFIXES = ("app.kubernetes.io/", "cloudml.io/", "kubernetes.io/", "k8s.io/")
# Any subdomain of these is Kubernetes' or cloudml's too (batch.kubernetes.io/job-name,
# service.beta.kubernetes.io/aws-load-balancer-*, container.apparmor.security.beta.kubernetes.io/...):
# a workload setting one could break its Job, Pod Security, or a load balancer's source limits.
_RESERVED_LABEL_DOMAINS = ("kubernetes.io", "k8s.io", "cloudml.io")


def problem(message: str, fix: str) -> PydanticCustomError:
    """A validation error whose message and fix reach the user as written."""
    return PydanticCustomError("cloudml", "{message}", {"message": message, "fix": fix})


def dns_label(max_length: int, what: str, start_with_letter: bool = False):
    """A Kubernetes DNS-1123 label of at most `max_length` characters (shorter than 63 where
    cloudml appends suffixes to build object names). With `start_with_letter`, a DNS-1035 label:
    the names of Services (and of the Jobs and pods JobSet derives) must start with a letter."""

    def check(value: str) -> str:
        if len(value) > max_length:
            raise problem(
                f"is {len(value)} characters long; a {what} may have at most {max_length}",
                f"shorten it to {max_length} characters or fewer",
            )
        if not DNS1123_LABEL.fullmatch(value):
            raise problem(
                f"is not a valid {what}",
                "use lower-case letters, digits and '-', starting and ending with a letter or digit "
                "(Kubernetes DNS-1123 label)",
            )
        if start_with_letter and not value[0].isalpha():
            raise problem(
                f"is not a valid {what}: it starts with a digit",
                "start it with a letter (it names Services and JobSet pods: Kubernetes DNS-1035 label)",
            )
        return value

    return AfterValidator(check)


def _check_env_name(value: str) -> str:
    if not _ENV_NAME.fullmatch(value):
        raise problem("is not a valid environment variable name", "use letters, digits and '_', not starting with a digit")
    if value.startswith("CLOUDML_") or value == "TF_CONFIG":
        raise problem("is set by cloudml itself", "choose a name that does not start with CLOUDML_ and is not TF_CONFIG")
    if value.startswith(_NVIDIA_ENV_PREFIX):
        # The NVIDIA container runtime reads NVIDIA_VISIBLE_DEVICES (and its NVIDIA_* siblings) from
        # the container's env: `all` would hand a pod every GPU of its node, past its nvidia.com/gpu
        # request and the team's quota.
        raise problem(
            "is read by the NVIDIA container runtime to choose the GPUs and driver features a container gets",
            "remove it; request GPUs with `gpus:` (gpusPerWorker for distributedTraining): the device plugin sets "
            "NVIDIA_VISIBLE_DEVICES to the GPUs the pod was given",
        )
    return value


def _check_label_key(value: str) -> str:
    prefix, _, name = value.rpartition("/")
    if (
        len(name) > 63
        or not _QUALIFIED_NAME.fullmatch(name)
        or (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)))
    ):
        raise problem(
            "is not a valid Kubernetes label or annotation key",
            "use an optional DNS prefix and '/', then up to 63 letters, digits, '-', '_' or '.'",
        )
    domain = value.rpartition("/")[0]
    if value.startswith(_RESERVED_LABEL_PREFIXES) or any(domain.endswith("." + d) for d in _RESERVED_LABEL_DOMAINS):
        raise problem(
            "uses a prefix that cloudml or Kubernetes manages",
            f"use your own prefix, not one of {', '.join(_RESERVED_LABEL_PREFIXES)} "
            f"or a subdomain of {', '.join(_RESERVED_LABEL_DOMAINS)}",
        )
    return value


def _check_label_value(value: str) -> str:
    if value and (len(value) > 63 or not _QUALIFIED_NAME.fullmatch(value)):
        raise problem(
            "is not a valid Kubernetes label value",
            "use up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        )
    return value


def _check_cpu(value: str) -> str:
    if not _CPU.fullmatch(value) or _quantity_is_zero(value):
        raise problem("is not a CPU quantity", "write whole or fractional cores (\"4\", \"0.5\") or millicores (\"500m\")")
    return value


def _check_memory(value: str) -> str:
    if not _MEMORY.fullmatch(value) or _quantity_is_zero(value):
        raise problem("is not a memory quantity", "write a number with a binary unit, such as \"512Mi\" or \"16Gi\"")
    return value


def _check_storage(value: str) -> str:
    if not _MEMORY.fullmatch(value) or _quantity_is_zero(value):
        raise problem("is not a storage quantity", "write a number with a binary unit, such as \"500Gi\" or \"2Ti\"")
    return value


_QUANTITY_UNITS = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
                   "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}


def quantity_bytes(value: str) -> int:
    """Bytes of a memory or storage quantity that passed the contract's checks ("16Gi", "512M")."""
    number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", value).groups()
    return int(number) * _QUANTITY_UNITS[unit]


def cpu_millis(value: str) -> int:
    """Millicores of a CPU quantity that passed the contract's checks ("4", "0.5", "500m")."""
    return int(value[:-1]) if value.endswith("m") else round(float(value) * 1000)


def _quantity_is_zero(value: str) -> bool:
    digits = re.match(r"[\d.]+", value)
    return digits is not None and float(digits.group(0)) == 0


def _check_image(value: str) -> str:
    if not _IMAGE.fullmatch(value):
        raise problem(
            "is not a container image reference",
            "write registry/repository:tag, e.g. 111122223333.dkr.ecr.us-west-2.amazonaws.com/trainer:1.4.0",
        )
    name = value.split("@", 1)[0].rsplit("/", 1)[-1]
    if "@sha256:" not in value and (":" not in name or name.endswith(":latest")):
        raise problem(
            "is not pinned (no tag, or `latest`)",
            "name a version tag or a digest, e.g. trainer:1.4.0 or trainer@sha256:<digest>, so a re-run uses the same image",
        )
    return value


def _check_iam_principal(value: str) -> str:
    if not _IAM_PRINCIPAL.fullmatch(value):
        raise problem("is not an IAM role or user ARN", "write arn:aws:iam::<12-digit account>:role/<name>")
    return value


def _check_email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise problem("is not an email address", "write name@example.com")
    return value


def _cidr(min_prefix: int, max_prefix: int, what: str):
    def parse(value: object) -> IPv4Network:
        if not isinstance(value, str):
            raise problem("is not a CIDR block", "write it as a quoted string such as \"10.40.0.0/16\"")
        try:
            network = IPv4Network(value)
        except ValueError as error:
            raise problem(f"is not a CIDR block ({error})", "write a network address and prefix, e.g. 10.40.0.0/16") from None
        if not min_prefix <= network.prefixlen <= max_prefix:
            raise problem(f"is a /{network.prefixlen}; {what} must be /{min_prefix} to /{max_prefix}",
                          f"use a prefix length from {min_prefix} to {max_prefix}")
        return network

    return BeforeValidator(parse)


MAX_DURATION_SECONDS = 2**31 - 1  # Kubernetes keeps these in int32 (ttlSecondsAfterFinished)


def parse_duration(value: object) -> object:
    """`90s`, `30m`, `2h`, `1d`, `1h30m` or a whole number of seconds -> seconds."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise problem("is not a duration", "write a duration such as 90s, 30m, 2h, 1d or 1h30m")
    if isinstance(value, int):
        seconds = value
    else:
        text = value.strip()
        if not text or _DURATION_PART.sub("", text) != "":
            raise problem("is not a duration", "write a duration such as 90s, 30m, 2h, 1d or 1h30m")
        seconds = sum(int(n) * _DURATION_UNITS[u] for n, u in _DURATION_PART.findall(text))
    if seconds <= 0:
        raise problem("must be longer than zero", "write a positive duration such as 30m or 2h")
    if seconds > MAX_DURATION_SECONDS:
        raise problem("is longer than Kubernetes can hold (about 68 years)", "write a shorter duration")
    return seconds


def _check_cron(value: str) -> str:
    fields = value.split()
    if value in _CRON_MACROS:
        return value
    if len(fields) != 5 or not all(_CRON_FIELD.fullmatch(f) for f in fields):
        raise problem(
            "is not a cron schedule",
            "write five fields (minute hour day-of-month month day-of-week), e.g. \"0 3 * * *\", or @daily",
        )
    return value


_SECRET_KEY = re.compile(r"[-._a-zA-Z0-9]{1,253}")
_VERSION_LABEL = re.compile(r"[a-zA-Z0-9_]{1,63}")


def _check_secret_key(value: str) -> str:
    if not _SECRET_KEY.fullmatch(value) or value in (".", ".."):
        raise problem("is not a valid Secret key", "use up to 253 letters, digits, '-', '_' or '.'")
    return value


def _check_mount_path(value: str) -> str:
    parts = value.split("/")
    if not value.startswith("/") or value == "/" or ".." in parts or ":" in value or "\n" in value:
        raise problem("is not a mount path", "write an absolute path below / without '..' or ':', e.g. /data")
    trimmed = value.rstrip("/")
    if any(trimmed == r or trimmed.startswith(r + "/") for r in _RESERVED_MOUNT_PATHS):
        raise problem(
            "hides a directory the container or cloudml needs",
            f"mount somewhere else, not under {', '.join(_RESERVED_MOUNT_PATHS)}",
        )
    return value


def _check_sub_path(value: str) -> str:
    if not value or value.startswith("/") or ".." in value.split("/") or "\n" in value:
        raise problem("is not a relative path inside the volume", "write a path such as imagenet/train, without a leading / or '..'")
    return value


def _check_version_label(value: str) -> str:
    if not _VERSION_LABEL.fullmatch(value):
        raise problem("is not a TensorFlow Serving version label", "use letters, digits and '_' (e.g. stable, canary)")
    return value


# Paths a data mount must not hide: system directories, and where cloudml mounts its own files.
_RESERVED_MOUNT_PATHS = ("/bin", "/dev", "/etc", "/lib", "/proc", "/sbin", "/sys", "/usr", "/var/run", "/cloudml")

Count = Annotated[int, Strict(), Field(ge=0)]
PositiveCount = Annotated[int, Strict(), Field(ge=1)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
LabelKey = Annotated[str, AfterValidator(_check_label_key)]
LabelValue = Annotated[str, AfterValidator(_check_label_value)]
CpuQuantity = Annotated[str, AfterValidator(_check_cpu)]
MemoryQuantity = Annotated[str, AfterValidator(_check_memory)]
StorageQuantity = Annotated[str, AfterValidator(_check_storage)]
Image = Annotated[str, AfterValidator(_check_image)]
IamPrincipalArn = Annotated[str, AfterValidator(_check_iam_principal)]
Email = Annotated[str, AfterValidator(_check_email)]
Duration = Annotated[int, BeforeValidator(parse_duration)]
# A new VPC: AWS allows /16 to /28, and cloudml splits it into eight subnets of at least /27.
VpcCidr = Annotated[IPv4Network, _cidr(16, 24, "a new VPC")]
Cidr = Annotated[IPv4Network, _cidr(0, 32, "a CIDR")]
CronSchedule = Annotated[str, AfterValidator(_check_cron)]
SecretKey = Annotated[str, AfterValidator(_check_secret_key)]
MountPath = Annotated[str, AfterValidator(_check_mount_path)]
SubPath = Annotated[str, AfterValidator(_check_sub_path)]
VersionLabel = Annotated[str, AfterValidator(_check_version_label)]

