"""Validate a Kubernetes object against the schema of the cluster that would receive it: the
Kubernetes 1.31 OpenAPI schemas (kubernetes-validate) for built-in kinds, the CRD schemas in
../shared/crds/ (JobSet, KEDA, Prometheus operator) for custom kinds."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import ValidationError

KUBERNETES_VERSION = "1.31.0"
CRDS = Path(__file__).resolve().parents[2] / "shared" / "crds"


@lru_cache(maxsize=None)
def crd_schemas() -> dict[tuple[str, str], dict]:
    """(apiVersion, kind) -> the openAPIV3Schema of that CRD version."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schemas[(f"{group}/{version['name']}", kind)] = strict(version["schema"]["openAPIV3Schema"])
    if not schemas:
        raise FileNotFoundError(f"no CRD schemas in {CRDS}: the tests need ../shared/crds beside the checkout")
    return schemas


def strict(schema: dict) -> dict:
    """The schema with unknown fields refused wherever the CRD lists an object's fields.

    The API server prunes fields a structural schema does not know, silently: a misspelt JobSet or
    ScaledObject field would be dropped, not refused. Tests refuse it instead."""
    if isinstance(schema, dict):
        schema = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(v) for v in schema]
    return schema


def schema_errors(obj: dict) -> list[str]:
    """Every way `obj` breaks its kind's schema ([] when it is valid). Custom kinds without a CRD
    schema here are an error, not a pass."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in crd_schemas():
        validator = jsonschema.Draft7Validator(crd_schemas()[key])
        # A CRD schema leaves metadata loose; check it as the API server would for any object.
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
        return errors + _metadata_errors(obj)
    group = str(key[0]).split("/")[0] if "/" in str(key[0]) else ""
    if "." in group and not group.endswith(".k8s.io"):
        return [f"no CRD schema for {key[0]} {key[1]} in {CRDS}"]
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except ValidationError as error:
        return [str(error)]
    return []


def _metadata_errors(obj: dict) -> list[str]:
    meta = obj.get("metadata") or {}
    stub = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    try:
        kubernetes_validate.validate(stub, KUBERNETES_VERSION, strict=True)
    except ValidationError as error:
        return [f"metadata: {error}"]
    return [] if meta.get("name") else ["metadata.name is missing"]
