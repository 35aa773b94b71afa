"""The `image-pinned-from-allowed-registry` rule, and the image reference parser it needs.

References are read the way Docker and containerd read them (distribution/reference): the first
path component is a registry host only if it has a `.` or `:`, is `localhost`, or has an upper-case
letter; otherwise the image is on Docker Hub (`docker.io`), and a single-component name is an
official image under `library/`. A reference without a tag or digest means `:latest`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass

from policies.core import MANDATORY, Finding, PlannedResource, PolicyConfig, ResourceRule, containers, is_unknown, mapping
from policies.rules.workloads_pods import POD_TYPES, container_at, pods

DOCKER_HUB = "docker.io"
# Other names of Docker Hub, which Docker normalizes to docker.io.
DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io")
OFFICIAL_NAMESPACE = "library"
LATEST = "latest"

_HOST_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST_RE = re.compile(rf"{_HOST_PART}(?:\.{_HOST_PART})*(?::[0-9]+)?")
_PATH_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")


@dataclass(frozen=True)
class ImageRef:
    """A parsed image reference: registry host (lower case), repository path, tag and digest."""

    host: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        return f"{self.host}/{self.path}"

    @property
    def pinned(self) -> bool:
        """A digest pins the image whatever its tag; otherwise a tag other than latest does."""
        return self.digest is not None or (self.tag is not None and self.tag != LATEST)


def parse_image(reference: str) -> ImageRef:
    """Parse an image reference; ValueError when it is not a valid one."""
    name, _, digest = reference.partition("@")
    if digest and not _DIGEST_RE.fullmatch(digest):
        raise ValueError(f"invalid digest {digest!r}")
    # The tag follows the last ':' after the last '/' (an earlier ':' is the registry's port).
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.fullmatch(tag):
            raise ValueError(f"invalid tag {tag!r}")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        host, path = first, rest
        if not _HOST_RE.fullmatch(host):
            raise ValueError(f"invalid registry host {host!r}")
        host = host.lower()
    else:
        host, path = DOCKER_HUB, name
    if host in DOCKER_HUB_ALIASES:
        host = DOCKER_HUB
    if host == DOCKER_HUB and "/" not in path:
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    if not _PATH_RE.fullmatch(path):
        raise ValueError(f"invalid repository name {path!r}")
    return ImageRef(host, path, tag, digest or None)


def registry_allowed(image: ImageRef, patterns: list[str]) -> bool:
    """Whether an allowed-registry pattern covers the image: a host pattern (`*.dkr.ecr.*.amazonaws.com`)
    matches its host; `host/namespace[/...]` matches the leading components of its repository."""
    components = image.repository.split("/")
    for pattern in patterns:
        wanted = pattern.lower().strip("/").split("/")
        if len(wanted) <= len(components) and all(fnmatch.fnmatchcase(c, w) for c, w in zip(components, wanted)):
            return True
    return False


def check_images(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    for path, spec in pods(resource.props):
        for where, container in containers(spec):
            at = f"{container_at(path, where, container)}.image"
            image = mapping(container).get("image")
            if image is None or image == "":
                yield Finding(f"{at} is not set", "Set an image from an allowed registry, pinned to a version tag or digest.")
                continue
            if not isinstance(image, str) or is_unknown(image):
                continue  # not known before the update (another resource's output): pulumi up checks it
            try:
                ref = parse_image(image)
            except ValueError as error:
                yield Finding(f"{at} {image} is not a valid image reference ({error})",
                              "Write the image as [registry/]repository[:tag][@digest].")
                continue
            if not ref.pinned:
                why = f"its tag is {LATEST}" if ref.tag == LATEST else f"it has no tag, which means {LATEST}"
                yield Finding(f"{at} {image} is not pinned: {why}",
                              "Pin the image to a version tag (e.g. :2.18.0) or a digest (@sha256:...).")
            if not registry_allowed(ref, config.allowed_registries):
                yield Finding(
                    f"{at} {image} is from {ref.repository}, which no allowed registry covers "
                    f"({', '.join(config.allowed_registries)})",
                    "Use an image from an allowed registry (mirror it into ECR), or add its registry to "
                    "allowedRegistries in the pack config.",
                )


IMAGE_PINNED_FROM_ALLOWED_REGISTRY = ResourceRule(
    name="image-pinned-from-allowed-registry",
    description="Every container image is pinned to a tag other than latest (or a digest) and comes from an "
    "allowed registry.",
    level=MANDATORY,
    types=POD_TYPES,
    check=check_images,
    opt_out="add the registry (host pattern, or host/namespace) to allowedRegistries in the pack config; "
    "pinning cannot be turned off.",
    config_keys=("allowedRegistries",),
)
