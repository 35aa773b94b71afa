"""Every Kubernetes object the sample stacks would create is valid Kubernetes 1.31, and every team
workload pod passes Pod Security `restricted`.

Built-in kinds are checked against the official OpenAPI schemas that `kubernetes-validate` ships,
custom kinds (JobSet, ScaledObject, ...) against the CRD schemas in ../shared/crds (tests/k8s_schema.py;
strict: unknown fields are errors), one test per object so a failure names stack, manifest file, kind
and name.
The written manifest files are also read back the way kubectl reads YAML, to prove that what a
reviewer would `kubectl apply` is the same valid object.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import ValidationError

from cloudml.plan import Planner, StackPlan, manifest_files
from cloudml.stackfile import list_stacks
from k8s_schema import KUBERNETES_VERSION, schema_errors
from policies.pod_security import restricted_violations
from workload_fixtures import pod_templates

REPO = Path(__file__).resolve().parent.parent
STACKS = REPO / "stacks"


# --- collection: which objects exist (the tests themselves use the session fixture) -------------


@lru_cache(maxsize=1)
def _collected() -> dict[str, StackPlan | Exception]:
    """Plan the sample stacks once at collection time, only to name one test per object."""
    planner = Planner(STACKS)
    plans: dict[str, StackPlan | Exception] = {}
    for stack in list_stacks(STACKS):
        try:
            plans[stack] = planner.plan(stack)
        except Exception as error:  # noqa: BLE001 - reported by the test, not at collection
            plans[stack] = error
    return plans


def _identity(obj: dict) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return obj.get("kind", "?"), meta.get("namespace", ""), meta.get("name", "?")


def _object_params() -> list:
    params = []
    for stack, plan in _collected().items():
        if isinstance(plan, Exception):
            params.append(pytest.param(stack, -1, None, id=f"{stack}/PLANNING-FAILED"))
            continue
        for index, item in enumerate(plan.objects):
            kind, namespace, name = _identity(item.object)
            where = f"{namespace}/{name}" if namespace else name
            params.append(pytest.param(stack, index, (item.file, *_identity(item.object)),
                                       id=f"{stack}/{item.file}/{kind}/{where}"))
    return params


def _file_params() -> list:
    params = []
    for stack, plan in _collected().items():
        if isinstance(plan, Exception):
            continue
        for file in manifest_files(plan):
            marks = []
            if (stack, file) in _KNOWN_KUBECTL_MISREADS:
                marks.append(pytest.mark.xfail(strict=True, reason=_KNOWN_KUBECTL_MISREADS[(stack, file)]))
            params.append(pytest.param(stack, file, id=f"{stack}/{file}", marks=marks))
    return params


# --- the objects of the plan ------------------------------------------------------------------


def _validate(obj: dict, where: str) -> None:
    errors = schema_errors(obj)
    if errors:
        pytest.fail(f"{where} is not a valid Kubernetes {KUBERNETES_VERSION} object:\n" + "\n".join(errors), pytrace=False)


@pytest.mark.parametrize(("stack", "index", "identity"), _object_params())
def test_object_is_valid_against_the_kubernetes_1_31_schema(sample_plans, stack, index, identity):
    plan = sample_plans[stack]  # a planning error surfaces here, in the fixture
    assert identity is not None, f"stack {stack} could not be planned at collection: {_collected()[stack]}"
    item = plan.objects[index]
    assert (item.file, *_identity(item.object)) == identity, "planning is not deterministic"
    _validate(item.object, f"{stack}/{item.file}: {'/'.join(identity[1:])}")


@pytest.mark.parametrize("stack", list_stacks(STACKS))
def test_every_stack_plans_kubernetes_objects_and_all_of_them_are_checked(sample_plans, stack):
    plan = sample_plans[stack]
    assert len(plan.objects) > 0, f"{stack} plans no Kubernetes object: the schema test would pass vacuously"
    collected = _collected()[stack]
    assert not isinstance(collected, Exception)
    assert [(o.file, *_identity(o.object)) for o in plan.objects] == [
        (o.file, *_identity(o.object)) for o in collected.objects
    ], "the collected per-object tests do not cover exactly the planned objects"


def test_every_object_has_apiversion_kind_and_name(sample_plans):
    for stack, plan in sample_plans.items():
        for item in plan.objects:
            assert item.object.get("apiVersion") and item.object.get("kind"), (stack, item.file)
            assert item.object.get("metadata", {}).get("name"), (stack, item.file)


# --- the validator is live (negative controls) ------------------------------------------------

_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "control", "namespace": "team-x"},
    "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox:1"}]}}},
}


def test_validator_accepts_a_minimal_job():
    assert kubernetes_validate.validate(_JOB, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda o: o["spec"].__setitem__("backofLimit", 3),  # typo: unknown field (strict)
        lambda o: o["spec"]["template"]["spec"]["containers"][0].__setitem__("args", [3e-05]),  # number, not string
        lambda o: o["spec"].__setitem__("ttlSecondsAfterFinished", "1d"),  # string, not integer
        lambda o: o["spec"]["template"]["spec"]["containers"][0].pop("name"),  # required field
    ],
    ids=["unknown-field", "numeric-arg", "string-ttl", "missing-container-name"],
)
def test_validator_rejects_broken_objects(mutate):
    broken = copy.deepcopy(_JOB)
    mutate(broken)
    with pytest.raises(ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


# --- the written manifest files, read as kubectl reads them -----------------------------------


class KubectlYamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader plus the plain-scalar float rule of go-yaml v2 (`yamlStyleFloat` in
    resolve.go), the parser behind sigs.k8s.io/yaml with which kubectl turns manifests into JSON.
    PyYAML only reads a float when it has a '.', go-yaml also reads `3e-5` or `1e10` as floats."""


KubectlYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)

# (stack, file) -> reason, for manifest files kubectl would misread; none since ManifestDumper quotes them.
_KNOWN_KUBECTL_MISREADS: dict[tuple[str, str], str] = {}


def test_kubectl_loader_reads_exponent_numbers_as_floats_and_keeps_quoted_strings():
    assert yaml.load("[3e-5, '3e-5', 30, 1.5, abc]", Loader=KubectlYamlLoader) == [3e-05, "3e-5", 30, 1.5, "abc"]
    assert yaml.safe_load("[3e-5]") == ["3e-5"]  # PyYAML alone would not notice


@pytest.mark.parametrize(("stack", "file"), _file_params())
def test_manifest_file_read_by_kubectl_is_the_planned_valid_objects(sample_plans, stack, file):
    plan = sample_plans[stack]
    text = manifest_files(plan)[file]
    planned = [item.object for item in plan.objects if item.file == file]
    assert planned, f"{file} holds no object"
    read = [doc for doc in yaml.load_all(text, Loader=KubectlYamlLoader) if doc is not None]
    for obj in read:
        _validate(obj, f"{stack}/{file} as kubectl reads it: {_identity(obj)}")
    assert read == planned, f"{stack}/{file} does not read back as the planned objects under go-yaml's rules"


# --- Pod Security `restricted` for every team workload ------------------------------------------


def _team_pods(plan: StackPlan) -> list[tuple[str, dict]]:
    return [
        (f"{item.file}: {item.object['kind']}/{item.object['metadata']['name']}", pod)
        for item in plan.objects
        for pod in pod_templates(item.object)
    ]


@pytest.mark.parametrize("stack", [s for s in list_stacks(STACKS) if s.startswith("team-")])
def test_every_team_workload_pod_passes_pod_security_restricted(sample_plans, stack):
    """The namespace enforces `restricted`: a pod that breaks it would be refused at admission."""
    pods = _team_pods(sample_plans[stack])
    assert len(pods) >= 5, f"{stack}: only {len(pods)} pod templates found; the check would prove little"
    broken = {where: restricted_violations(pod["spec"]) for where, pod in pods if restricted_violations(pod["spec"])}
    assert broken == {}


def test_pod_security_check_names_each_missing_field():
    """The checker the test above relies on does fail: a bare pod breaks four controls, each named."""
    assert restricted_violations({"containers": [{"name": "main", "image": "busybox:1"}]}) == [
        "spec.containers[0] (main).securityContext.allowPrivilegeEscalation is not set to false: set it to false",
        "spec.containers[0] (main).securityContext.runAsNonRoot is not true (neither here nor in the pod's "
        "securityContext): set it to true",
        "spec.containers[0] (main).securityContext.seccompProfile is not set (neither here nor in the pod's "
        "securityContext): set type RuntimeDefault",
        "spec.containers[0] (main).securityContext.capabilities.drop does not contain ALL: drop ALL",
    ]
