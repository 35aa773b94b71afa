"""The pack's Kubernetes rules (policies/rules/workloads*.py): per rule a compliant object and
minimal mutations of it, each with the exact finding; the image reference parser; and the sample
stacks, whose objects break no mandatory rule (and whose dev environments cull themselves)."""

from __future__ import annotations

import copy

import pytest
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

from policies.core import MANDATORY, PlannedResource, PolicyConfig, evaluate, kubernetes_type
from policies.rules.workloads import RULES
from policies.rules.workloads_images import ImageRef, parse_image, registry_allowed
from policies.rules.workloads_pods import DEV_ENVIRONMENT_IDLE_CULLING, GPU_RESOURCES, POD_SECURITY_RESTRICTED
from policies.rules.workloads_images import IMAGE_PINNED_FROM_ALLOWED_REGISTRY as IMAGES
from policies.rules.workloads_services import LOAD_BALANCER_INTERNAL, MODEL_SERVICE_AVAILABILITY, TEAM_NAMESPACE_GPU_QUOTA
from tests.workload_fixtures import IMAGE, by_kind, render_workload

POD = "spec.template.spec"
MAIN = f"{POD}.containers[0] (main)"
SIDECAR = f"{POD}.initContainers[0] (tensorboard)"
DIGEST = "sha256:" + "ab" * 32
SECURITY = {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}
SELECTOR = {"cloudml.io/team": "vision", "cloudml.io/workload": "alice"}
JUPYTER = ["jupyter", "lab", "--ServerApp.shutdown_no_activity_timeout=7200"]


def gpu_job() -> dict:
    """A one-GPU Job in a team namespace that every pod rule accepts (a dev environment's shape)."""
    labels = {**SELECTOR, "app.kubernetes.io/component": "devEnvironment"}
    gpu = {"cpu": "4", "nvidia.com/gpu": 1}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "alice", "namespace": "team-vision"}, "spec": {
        "template": {"metadata": {"labels": labels}, "spec": {
            "restartPolicy": "OnFailure",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "nodeSelector": {"cloudml.io/gpu-type": "a10g"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "initContainers": [{"name": "tensorboard", "image": IMAGE, "restartPolicy": "Always",
                                "securityContext": copy.deepcopy(SECURITY)}],
            "containers": [{"name": "main", "image": IMAGE, "command": list(JUPYTER),
                            "env": [{"name": "CLOUDML_IDLE_TIMEOUT", "value": "7200"}],
                            "resources": {"requests": gpu, "limits": dict(gpu)}, "securityContext": copy.deepcopy(SECURITY)}],
            "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": "alice-home"}}],
        }}}}


def planned(obj: dict, stack: str = "team-vision") -> PlannedResource:
    meta = obj.get("metadata") or {}
    name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "")
    return PlannedResource(kubernetes_type(obj), name, f"urn:pulumi:{stack}::cloudml::kubernetes:yaml/v2:ConfigGroup::x", obj)


def findings(rule, *objs: dict, stack: str = "team-vision", **config) -> list[tuple[str, str]]:
    """(message, fix) of every finding of one rule over these objects."""
    return [(v.message, v.fix) for v in evaluate([rule], [planned(o, stack) for o in objs], PolicyConfig(**config))]


def messages(rule, *objs: dict, **kwargs) -> list[str]:
    return [m for m, _ in findings(rule, *objs, **kwargs)]


def mutate(obj: dict, change) -> dict:
    obj = copy.deepcopy(obj)
    change(obj)
    return obj


def pod(obj: dict) -> dict:
    return obj["spec"]["template"]["spec"]


def test_the_compliant_job_breaks_no_workload_rule():
    assert evaluate(RULES, [planned(gpu_job())]) == []


# --- pod-security-restricted -----------------------------------------------------------------


def test_pod_security_names_the_field_under_the_pods_path_with_its_fix():
    job = mutate(gpu_job(), lambda o: pod(o)["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"))
    assert findings(POD_SECURITY_RESTRICTED, job) == [
        (f"{MAIN}.securityContext.allowPrivilegeEscalation is not set to false", "Set it to false.")]


def test_pod_security_reports_each_broken_control_of_every_pod():
    def break_pod(o):
        pod(o)["hostNetwork"] = True
        pod(o)["volumes"].append({"name": "docker", "hostPath": {"path": "/var/run"}})
    assert findings(POD_SECURITY_RESTRICTED, mutate(gpu_job(), break_pod)) == [
        (f"{POD}.hostNetwork is true; host namespaces are not allowed", "Remove it."),
        (f"{POD}.volumes[1] (docker) uses hostPath, not an allowed volume type",
         "Remove it or use an allowed type: configMap, csi, downwardAPI, emptyDir, ephemeral, persistentVolumeClaim, "
         "projected, secret."),
    ]


def test_every_pod_security_control_gets_a_fix_of_its_own():
    """Each control of tests/test_pod_security.py ROWS, broken in a team Job's pod, comes back as the
    message and its own fix (never the generic fallback), which together say what the row says."""
    from test_pod_security import COMPLIANT, ROWS

    for change, expected in ROWS:
        spec = copy.deepcopy(COMPLIANT)
        change(spec)
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "namespace": "team-vision"},
               "spec": {"template": {"spec": spec}}}
        [(message, fix)] = findings(POD_SECURITY_RESTRICTED, job)
        assert fix != "Change the pod spec so that it meets Pod Security restricted.", expected
        assert fix[0].isupper() and fix.endswith(".")
        assert f"{message}: {fix[0].lower()}{fix[1:-1]}" == POD + expected[len("spec"):]


def test_pod_security_follows_the_pod_paths_of_jobsets():
    job_spec = {"template": {"spec": pod(gpu_job())}}
    bad_spec = mutate(job_spec, lambda s: s["template"]["spec"]["containers"][0]["securityContext"].update(privileged=True))
    jobset = {"apiVersion": "jobset.x-k8s.io/v1alpha2", "kind": "JobSet", "metadata": {"name": "d", "namespace": "team-nlp"},
              "spec": {"replicatedJobs": [{"name": "ps", "template": {"spec": job_spec}},
                                          {"name": "worker", "template": {"spec": bad_spec}}]}}
    assert messages(POD_SECURITY_RESTRICTED, jobset) == [
        "spec.replicatedJobs[1].template.spec.template.spec.containers[0] (main).securityContext.privileged is true"]


def unlabelled(obj: dict) -> dict:
    """The object without any cloudml.io/team label (its own or its pod template's)."""
    return mutate(obj, lambda o: [o["metadata"].pop("labels", None),
                                  o["spec"]["template"]["metadata"]["labels"].pop("cloudml.io/team")])


def test_pod_security_judges_team_objects_by_namespace_prefix_or_team_label():
    privileged = mutate(gpu_job(), lambda o: pod(o).update(hostPID=True))
    host_pid = [f"{POD}.hostPID is true; host namespaces are not allowed"]
    # By namespace: team-vision starts with teamNamespacePrefix, whatever the labels.
    assert messages(POD_SECURITY_RESTRICTED, unlabelled(privileged)) == host_pid
    assert messages(POD_SECURITY_RESTRICTED, unlabelled(privileged), team_namespace_prefix="ml-") == []
    # Neither a team namespace nor a team label: a platform object, not judged.
    system = mutate(unlabelled(privileged), lambda o: o["metadata"].update(namespace="cloudml-system"))
    assert messages(POD_SECURITY_RESTRICTED, system) == []
    # The label makes it a team's in any namespace, `default` or none; on the pod template or the object.
    for namespace in ("default", None, "cloudml-system"):
        labelled = mutate(privileged, lambda o: o["metadata"].update(namespace=namespace) if namespace
                          else o["metadata"].pop("namespace"))
        assert messages(POD_SECURITY_RESTRICTED, labelled) == host_pid, namespace
        own_label = mutate(unlabelled(labelled), lambda o: o["metadata"].update(labels={"cloudml.io/team": "vision"}))
        assert messages(POD_SECURITY_RESTRICTED, own_label) == host_pid, namespace


def test_team_namespace_rules_share_one_notion_of_a_team_object():
    """pod-security-restricted, gpu-resources and team-namespace-gpu-quota all scope by
    `is_team_object`: the prefix (for a Namespace, its own name) or the cloudml.io/team label."""
    from policies.rules.workloads_pods import is_team_object

    config = PolicyConfig()
    assert is_team_object(namespace("team-x"), config) and is_team_object(namespace("research", **{"cloudml.io/team": "r"}), config)
    assert not is_team_object(namespace("cloudml-system"), config)
    assert not is_team_object(namespace("team-x"), PolicyConfig(team_namespace_prefix="ml-"))
    assert is_team_object(gpu_job(), config) and not is_team_object(
        mutate(unlabelled(gpu_job()), lambda o: o["metadata"].update(namespace="default")), config)
    # Unknown labels say nothing: only the (known) namespace decides.
    unknown = mutate(unlabelled(gpu_job()), lambda o: [o["metadata"].update(namespace="default", labels=UNKNOWN_STRING_VALUE)])
    assert not is_team_object(unknown, config)


def test_pod_security_reports_a_malformed_pod_instead_of_crashing():
    job = mutate(gpu_job(), lambda o: pod(o).update(securityContext="unknown"))
    assert messages(POD_SECURITY_RESTRICTED, job) == [
        f"{POD} is malformed (a field holds a value of the wrong type), so Pod Security cannot be checked"]


# --- gpu-resources ---------------------------------------------------------------------------


def test_gpu_limit_must_be_set():
    job = mutate(gpu_job(), lambda o: pod(o)["containers"][0]["resources"]["limits"].pop("nvidia.com/gpu"))
    assert findings(GPU_RESOURCES, job) == [
        (f'{MAIN}.resources.limits["nvidia.com/gpu"] is not set (requests 1)', "Set limits nvidia.com/gpu to 1, equal to the requests.")]


def test_gpu_limit_must_equal_the_request():
    job = mutate(gpu_job(), lambda o: pod(o)["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": "2"}))
    assert messages(GPU_RESOURCES, job) == [f'{MAIN}.resources.limits["nvidia.com/gpu"] is 2 but requests is 1: they must be equal']
    # "1" and 1 are the same quantity; a limit alone (requests default to it) is fine.
    assert messages(GPU_RESOURCES, mutate(gpu_job(), lambda o: pod(o)["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": "1"}))) == []
    assert messages(GPU_RESOURCES, mutate(gpu_job(), lambda o: pod(o)["containers"][0]["resources"].pop("requests"))) == []


def test_gpu_pod_must_tolerate_the_gpu_taint():
    job = mutate(gpu_job(), lambda o: pod(o).pop("tolerations"))
    assert findings(GPU_RESOURCES, job) == [(
        f"{POD}.tolerations does not tolerate the GPU taint nvidia.com/gpu=true:NoSchedule",
        "Add the toleration {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}.")]


@pytest.mark.parametrize(("toleration", "tolerated"), [
    ({"operator": "Exists"}, True),  # tolerates every taint
    ({"key": "nvidia.com/gpu", "operator": "Exists"}, True),  # every effect
    ({"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}, True),  # operator Equal by default
    ({"key": "nvidia.com/gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}, False),
    ({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoExecute"}, False),
    ({"key": "cloudml.io/gpu", "operator": "Exists"}, False),
])
def test_gpu_taint_toleration_matches_like_kubernetes(toleration, tolerated):
    job = mutate(gpu_job(), lambda o: pod(o).update(tolerations=[toleration]))
    assert (messages(GPU_RESOURCES, job) == []) is tolerated


NO_GPU_POOL = (f"{POD}.nodeSelector selects no GPU pool (neither cloudml.io/gpu-type (any GPU type) or "
               'nvidia.com/gpu.present: "true", nor a required node affinity on them)')


def test_gpu_pod_must_select_a_gpu_pool():
    no_selector = mutate(gpu_job(), lambda o: pod(o).pop("nodeSelector"))
    assert findings(GPU_RESOURCES, no_selector) == [(NO_GPU_POOL, "Set nodeSelector cloudml.io/gpu-type: <GPU type>.")]
    gpu_term = {"matchExpressions": [{"key": "cloudml.io/gpu-type", "operator": "In", "values": ["a10g"]}]}
    other_term = {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}

    def affinity(*terms):
        required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}
        return mutate(no_selector, lambda o: pod(o).update(affinity={"nodeAffinity": required}))
    assert messages(GPU_RESOURCES, affinity(gpu_term)) == []
    # Terms are ORed: one without a GPU pool lets the pod land anywhere.
    assert messages(GPU_RESOURCES, affinity(gpu_term, other_term)) == [NO_GPU_POOL]


@pytest.mark.parametrize(("selector", "selects"), [
    ({"cloudml.io/gpu-type": "a10g"}, True),
    ({"nvidia.com/gpu.present": "true"}, True),
    ({"cloudml.io/pool": "system"}, False),  # a pool name alone: the system pool has one too
    ({"cloudml.io/pool": "gpu-a10g"}, False),
    ({"nvidia.com/gpu.present": "false"}, False),
])
def test_gpu_pool_selectors_must_prove_gpu_nodes(selector, selects):
    job = mutate(gpu_job(), lambda o: pod(o).update(nodeSelector=selector))
    assert messages(GPU_RESOURCES, job) == ([] if selects else [NO_GPU_POOL])


@pytest.mark.parametrize(("expression", "selects"), [
    ({"key": "cloudml.io/gpu-type", "operator": "Exists"}, True),
    ({"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}, True),
    ({"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true", "false"]}, False),
    ({"key": "nvidia.com/gpu.present", "operator": "Exists"}, False),
    ({"key": "cloudml.io/pool", "operator": "In", "values": ["a10g"]}, False),
    ({"key": "cloudml.io/gpu-type", "operator": "NotIn", "values": ["a10g"]}, False),
])
def test_gpu_pool_node_affinity_must_prove_gpu_nodes(expression, selects):
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [expression]}]}}
    job = mutate(gpu_job(), lambda o: [pod(o).pop("nodeSelector"), pod(o).update(affinity={"nodeAffinity": required})])
    assert messages(GPU_RESOURCES, job) == ([] if selects else [NO_GPU_POOL])


def test_pods_without_gpus_and_gpu_pods_of_every_namespace():
    cpu = mutate(gpu_job(), lambda o: [pod(o).pop("tolerations"), pod(o).pop("nodeSelector"),
                                       pod(o)["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": 0}),
                                       pod(o)["containers"][0]["resources"]["requests"].pop("nvidia.com/gpu")])
    assert messages(GPU_RESOURCES, cpu) == []
    system = mutate(gpu_job(), lambda o: [o["metadata"].update(namespace="kube-system"), pod(o).pop("tolerations")])
    assert len(messages(GPU_RESOURCES, system)) == 1


GPU_NODE_FIX = ("Set limits nvidia.com/gpu on the container that uses GPUs (requests equal), or remove the GPU pool "
                "selector and the GPU taint toleration.")
SELECTS = 'selects a GPU pool (cloudml.io/gpu-type (any GPU type) or nvidia.com/gpu.present: "true")'
TOLERATES = "tolerates the GPU taint nvidia.com/gpu=true:NoSchedule"


def on_gpu_nodes_without_a_limit(*reasons: str, path: str = POD) -> str:
    return (f'{path} {" and ".join(reasons)}, but no container sets limits["nvidia.com/gpu"]: the pod can run on a GPU '
            "node without a GPU counted against the team's quota")


def without_gpus(obj: dict) -> dict:
    """The compliant GPU Job with its GPU request and limit taken away (selector and toleration kept)."""
    return mutate(obj, lambda o: [pod(o)["containers"][0]["resources"][k].pop("nvidia.com/gpu") for k in ("requests", "limits")])


def test_a_team_pod_on_gpu_nodes_must_set_a_gpu_limit():
    """A pod that selects a GPU pool and/or tolerates the GPU taint lands on GPU nodes: without a GPU
    limit it runs there uncounted by the quota (and an image's NVIDIA_VISIBLE_DEVICES=all sees the GPUs)."""
    sneaky = without_gpus(gpu_job())
    assert findings(GPU_RESOURCES, sneaky) == [(on_gpu_nodes_without_a_limit(SELECTS, TOLERATES), GPU_NODE_FIX)]
    assert findings(GPU_RESOURCES, mutate(sneaky, lambda o: pod(o).pop("tolerations"))) == [
        (on_gpu_nodes_without_a_limit(SELECTS), GPU_NODE_FIX)]
    assert findings(GPU_RESOURCES, mutate(sneaky, lambda o: pod(o).pop("nodeSelector"))) == [
        (on_gpu_nodes_without_a_limit(TOLERATES), GPU_NODE_FIX)]
    # Tolerating every taint tolerates the GPU taint; a zero limit is no GPU; affinity selects like nodeSelector.
    tolerates_all = mutate(sneaky, lambda o: [pod(o).pop("nodeSelector"), pod(o).update(tolerations=[{"operator": "Exists"}])])
    assert messages(GPU_RESOURCES, tolerates_all) == [on_gpu_nodes_without_a_limit(TOLERATES)]
    zero = mutate(sneaky, lambda o: pod(o)["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": "0"}))
    assert messages(GPU_RESOURCES, zero) == [on_gpu_nodes_without_a_limit(SELECTS, TOLERATES)]
    required = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]}]}]}}
    by_affinity = mutate(sneaky, lambda o: [pod(o).pop("nodeSelector"), pod(o).pop("tolerations"),
                                            pod(o).update(affinity={"nodeAffinity": required})])
    assert messages(GPU_RESOURCES, by_affinity) == [on_gpu_nodes_without_a_limit(SELECTS)]
    # Neither selecting a GPU pool nor tolerating the taint: a CPU pod, fine.
    assert messages(GPU_RESOURCES, mutate(sneaky, lambda o: [pod(o).pop("nodeSelector"), pod(o).pop("tolerations")])) == []


def test_gpu_node_pods_are_judged_in_team_objects_only():
    """The platform's GPU DaemonSets (device plugin, dcgm-exporter) run on every GPU node without a
    GPU of their own, outside team namespaces: they pass. The same pod as a team's is reported."""
    exporter_pod = {"nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [{"name": "exporter", "image": "nvcr.io/nvidia/k8s/dcgm-exporter:4.2.3-4.1.3-ubuntu22.04",
                                    "env": [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}]}]}

    def daemonset(namespace: str | None, labels: dict) -> dict:
        meta = {"name": "dcgm-exporter", "labels": labels, **({"namespace": namespace} if namespace else {})}
        return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta,
                "spec": {"template": {"metadata": {"labels": {"app": "dcgm"}}, "spec": copy.deepcopy(exporter_pod)}}}
    for namespace in ("cloudml-system", "monitoring", "kube-system"):
        assert messages(GPU_RESOURCES, daemonset(namespace, {})) == []
    env = ('spec.template.spec.containers[0] (exporter).env[0] sets NVIDIA_VISIBLE_DEVICES (all), which only the NVIDIA '
           'device plugin may set (from the GPUs allotted by limits["nvidia.com/gpu"]): set by hand it bypasses the GPU request')
    expected = [env, on_gpu_nodes_without_a_limit(SELECTS, TOLERATES)]
    assert messages(GPU_RESOURCES, daemonset("team-vision", {})) == expected
    assert messages(GPU_RESOURCES, daemonset("default", {"cloudml.io/team": "vision"})) == expected
    assert messages(GPU_RESOURCES, daemonset(None, {"cloudml.io/team": "vision"})) == expected
    assert messages(GPU_RESOURCES, daemonset("cloudml-system", {}), team_namespace_prefix="cloudml-") == expected


VISIBLE_DEVICES_FIX = ("Remove it and request GPUs with limits nvidia.com/gpu; to keep a container without GPUs from "
                       "seeing the node's, set NVIDIA_VISIBLE_DEVICES to void.")
OTHER_NVIDIA_FIX = "Remove it; GPUs and their devices come only with limits nvidia.com/gpu."


@pytest.mark.parametrize(("env", "sets", "fix"), [
    ({"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}, "NVIDIA_VISIBLE_DEVICES (all)", VISIBLE_DEVICES_FIX),
    ({"name": "NVIDIA_VISIBLE_DEVICES", "value": "0,1,2,3"}, "NVIDIA_VISIBLE_DEVICES (0,1,2,3)", VISIBLE_DEVICES_FIX),
    ({"name": "NVIDIA_VISIBLE_DEVICES", "valueFrom": {"configMapKeyRef": {"name": "gpus", "key": "visible"}}},
     "NVIDIA_VISIBLE_DEVICES", VISIBLE_DEVICES_FIX),
    ({"name": "NVIDIA_MIG_CONFIG_DEVICES", "value": "all"}, "NVIDIA_MIG_CONFIG_DEVICES (all)", OTHER_NVIDIA_FIX),
    ({"name": "NVIDIA_MIG_MONITOR_DEVICES", "value": "all"}, "NVIDIA_MIG_MONITOR_DEVICES (all)", OTHER_NVIDIA_FIX),
    ({"name": "NVIDIA_GDS", "value": "enabled"}, "NVIDIA_GDS (enabled)", OTHER_NVIDIA_FIX),
    ({"name": "NVIDIA_MOFED", "value": "enabled"}, "NVIDIA_MOFED (enabled)", OTHER_NVIDIA_FIX),
])
def test_team_containers_do_not_set_the_device_plugins_variables(env, sets, fix):
    """The device plugin sets these from the GPUs the kubelet allotted; a pod's own env comes after
    the plugin's and wins, so set by hand they reach GPUs no request allotted, GPU container or not."""
    for obj in (gpu_job(), without_gpus(mutate(gpu_job(), lambda o: [pod(o).pop("nodeSelector"), pod(o).pop("tolerations")]))):
        job = mutate(obj, lambda o: pod(o)["initContainers"][0].update(env=[env]))
        assert findings(GPU_RESOURCES, job) == [(
            f"{SIDECAR}.env[0] sets {sets}, which only the NVIDIA device plugin may set (from the GPUs allotted by "
            'limits["nvidia.com/gpu"]): set by hand it bypasses the GPU request', fix)]


@pytest.mark.parametrize("env", [
    {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"},  # what cloudml's dev environment sidecar sets
    {"name": "NVIDIA_VISIBLE_DEVICES", "value": "none"},
    {"name": "NVIDIA_VISIBLE_DEVICES", "value": ""},
    {"name": "NVIDIA_VISIBLE_DEVICES"},
    {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,utility"},  # which driver libraries: not devices
    {"name": "NVIDIA_VISIBLE_DEVICES", "value": UNKNOWN_STRING_VALUE},  # unknown in a preview: not judged
])
def test_hiding_the_gpus_and_other_nvidia_variables_pass(env):
    job = mutate(gpu_job(), lambda o: pod(o)["initContainers"][0].update(env=[env]))
    assert findings(GPU_RESOURCES, job) == []


def test_cloudmls_dev_environment_sidecar_hides_the_gpus_and_passes():
    [job] = by_kind(render_workload({"kind": "devEnvironment", "name": "alice", "gpus": 1}))["Job"]
    sidecar = pod(job)["initContainers"][0]
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in sidecar["env"]
    assert findings(GPU_RESOURCES, job) == []


# --- image-pinned-from-allowed-registry ------------------------------------------------------


@pytest.mark.parametrize(("reference", "expected", "pinned"), [
    ("tensorflow/serving:2.18.0-gpu", ImageRef("docker.io", "tensorflow/serving", "2.18.0-gpu", None), True),
    ("ubuntu:22.04", ImageRef("docker.io", "library/ubuntu", "22.04", None), True),
    ("ubuntu", ImageRef("docker.io", "library/ubuntu", None, None), False),
    ("ubuntu:latest", ImageRef("docker.io", "library/ubuntu", "latest", None), False),
    ("index.docker.io/tensorflow/tensorflow:2.18.0", ImageRef("docker.io", "tensorflow/tensorflow", "2.18.0", None), True),
    (IMAGE, ImageRef("111122223333.dkr.ecr.us-west-2.amazonaws.com", "cloudml/trainer", "0.1.0", None), True),
    ("public.ecr.aws/docker/library/python:3.12", ImageRef("public.ecr.aws", "docker/library/python", "3.12", None), True),
    ("localhost:5000/team/model:1", ImageRef("localhost:5000", "team/model", "1", None), True),
    ("localhost/model", ImageRef("localhost", "model", None, None), False),
    ("registry:5000/model", ImageRef("registry:5000", "model", None, None), False),
    ("Registry.Example.com/ml/app:v2", ImageRef("registry.example.com", "ml/app", "v2", None), True),
    (f"nvcr.io/nvidia/tritonserver@{DIGEST}", ImageRef("nvcr.io", "nvidia/tritonserver", None, DIGEST), True),
    (f"registry.example.com:443/ml/app:latest@{DIGEST}", ImageRef("registry.example.com:443", "ml/app", "latest", DIGEST), True),
])
def test_image_references_parse_like_docker(reference, expected, pinned):
    assert parse_image(reference) == expected
    assert parse_image(reference).pinned is pinned


@pytest.mark.parametrize("reference", ["tensorflow/serving:", "tensorflow/Serving:1", "ubuntu@sha256:abc", "-bad/image:1", "a/b:x y"])
def test_invalid_image_references_are_refused(reference):
    with pytest.raises(ValueError):
        parse_image(reference)


@pytest.mark.parametrize(("reference", "allowed"), [
    (IMAGE, True),
    ("public.ecr.aws/docker/library/python:3.12", True),
    ("tensorflow/serving:2.18.0-gpu", True),
    ("docker.io/tensorflow/tensorflow:2.18.0", True),
    ("nvcr.io/nvidia/pytorch:24.08-py3", True),
    ("ubuntu:22.04", False),  # docker.io/library/ubuntu
    ("tensorflowx/serving:1", False),  # namespaces match whole components
    ("evil.example.com/docker.io/tensorflow/serving:1", False),
    ("123.dkr.ecr.us-west-2.amazonaws.com.evil.io/x:1", False),
])
def test_allowed_registries_match_hosts_and_namespaces(reference, allowed):
    assert registry_allowed(parse_image(reference), PolicyConfig().allowed_registries) is allowed


def test_unpinned_images_are_reported():
    latest = mutate(gpu_job(), lambda o: pod(o)["containers"][0].update(image="tensorflow/tensorflow:latest"))
    assert findings(IMAGES, latest) == [(
        f"{MAIN}.image tensorflow/tensorflow:latest is not pinned: its tag is latest",
        "Pin the image to a version tag (e.g. :2.18.0) or a digest (@sha256:...).")]
    untagged = mutate(gpu_job(), lambda o: pod(o)["initContainers"][0].update(image="nvcr.io/nvidia/pytorch"))
    assert messages(IMAGES, untagged) == [f"{SIDECAR}.image nvcr.io/nvidia/pytorch is not pinned: it has no tag, which means latest"]


def test_images_from_other_registries_are_reported():
    job = mutate(gpu_job(), lambda o: pod(o)["containers"][0].update(image="ubuntu:22.04"))
    assert findings(IMAGES, job) == [(
        f"{MAIN}.image ubuntu:22.04 is from docker.io/library/ubuntu, which no allowed registry covers "
        "(*.dkr.ecr.*.amazonaws.com, public.ecr.aws, docker.io/tensorflow, nvcr.io)",
        "Use an image from an allowed registry (mirror it into ECR), or add its registry to allowedRegistries in the pack config.")]
    assert messages(IMAGES, job, allowed_registries=["docker.io/library", "*.dkr.ecr.*.amazonaws.com"]) == []


def test_missing_invalid_and_unknown_images():
    assert messages(IMAGES, mutate(gpu_job(), lambda o: pod(o)["containers"][0].pop("image"))) == [f"{MAIN}.image is not set"]
    assert messages(IMAGES, mutate(gpu_job(), lambda o: pod(o)["containers"][0].update(image="tensorflow/serving:"))) == [
        f"{MAIN}.image tensorflow/serving: is not a valid image reference (invalid tag '')"]
    # Unknown during a preview: the protocol's sentinel (tests/test_policy_engine.py drives it through the engine).
    assert messages(IMAGES, mutate(gpu_job(), lambda o: pod(o)["containers"][0].update(image=UNKNOWN_STRING_VALUE))) == []


# --- load-balancer-internal ------------------------------------------------------------------

SCHEME = "service.beta.kubernetes.io/aws-load-balancer-scheme"
SCHEME_FIELD = f'metadata.annotations["{SCHEME}"]'


def lb_service(annotations: dict, **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "resnet", "namespace": "team-vision", "annotations": annotations},
            "spec": {"type": "LoadBalancer", "selector": SELECTOR, "ports": [{"port": 8500}], **spec}}


@pytest.mark.parametrize("service", [
    lb_service({SCHEME: "internal"}),
    lb_service({"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}),  # legacy in-tree controller
    lb_service({SCHEME: "internet-facing"}, loadBalancerSourceRanges=["203.0.113.0/24", "198.51.100.7/32"]),
    {**lb_service({}), "spec": {"type": "ClusterIP", "selector": SELECTOR}},
])
def test_internal_and_explicitly_restricted_load_balancers_pass(service):
    assert messages(LOAD_BALANCER_INTERNAL, service) == []


def test_load_balancer_without_a_scheme_is_internet_facing():
    assert findings(LOAD_BALANCER_INTERNAL, lb_service({})) == [
        (f"{SCHEME_FIELD} is not set, so the load balancer is internet-facing", f"Set {SCHEME_FIELD} to internal.")]
    assert messages(LOAD_BALANCER_INTERNAL, lb_service({SCHEME: "public"})) == [f"{SCHEME_FIELD} is public, neither internal nor internet-facing"]


def test_internet_facing_load_balancer_needs_source_ranges_without_the_whole_internet():
    fix = f"List the CIDRs allowed to connect in spec.loadBalancerSourceRanges (never 0.0.0.0/0), or set {SCHEME_FIELD} to internal."
    # The scheme annotation wins over the legacy internal one.
    open_lb = lb_service({SCHEME: "internet-facing", "service.beta.kubernetes.io/aws-load-balancer-internal": "true"})
    assert findings(LOAD_BALANCER_INTERNAL, open_lb) == [
        ("spec.loadBalancerSourceRanges is empty on an internet-facing load balancer, which then admits the whole internet", fix)]
    ranges = ["203.0.113.0/24", "0.0.0.0/0", "::/0", "not-a-cidr"]
    assert messages(LOAD_BALANCER_INTERNAL, lb_service({SCHEME: "internet-facing"}, loadBalancerSourceRanges=ranges)) == [
        "spec.loadBalancerSourceRanges[1] is 0.0.0.0/0, which admits the whole internet",
        "spec.loadBalancerSourceRanges[2] is ::/0, which admits the whole internet",
        "spec.loadBalancerSourceRanges[3] not-a-cidr is not a CIDR",
    ]


LB_RANGES_FIX = ("List the CIDRs allowed to connect in spec.loadBalancerSourceRanges (never 0.0.0.0/0), or set "
                 f"{SCHEME_FIELD} to internal.")


@pytest.mark.parametrize(("ranges", "expected"), [
    (["0.0.0.0/1", "128.0.0.0/1"],
     ["spec.loadBalancerSourceRanges 0.0.0.0/1, 128.0.0.0/1 together cover 0.0.0.0/0, which admits the whole internet"]),
    (["128.0.0.0/1", "203.0.113.0/24", "0.0.0.0/2", "64.0.0.0/2"],
     ["spec.loadBalancerSourceRanges 128.0.0.0/1, 203.0.113.0/24, 0.0.0.0/2, 64.0.0.0/2 together cover 0.0.0.0/0, "
      "which admits the whole internet"]),
    # One family whole in a single entry (reported as such), the other in pieces.
    (["0.0.0.0/0", "::/1", "8000::/1"],
     ["spec.loadBalancerSourceRanges[0] is 0.0.0.0/0, which admits the whole internet",
      "spec.loadBalancerSourceRanges ::/1, 8000::/1 together cover ::/0, which admits the whole internet"]),
    (["0.0.0.0/1", "128.0.0.0/2", "192.0.0.0/3"], []),  # 224.0.0.0/3 left out
])
def test_source_ranges_that_together_cover_the_whole_internet(ranges, expected):
    service = lb_service({SCHEME: "internet-facing"}, loadBalancerSourceRanges=ranges)
    assert findings(LOAD_BALANCER_INTERNAL, service) == [(message, LB_RANGES_FIX) for message in expected]


def test_cloudmls_own_renders_of_every_expose_pass():
    for expose in ({"expose": "cluster"}, {"expose": "internal"}, {"expose": "internet", "sourceCidrs": ["203.0.113.0/24"]}):
        objs = by_kind(render_workload({"kind": "modelService", "name": "resnet", "model": "resnet", **expose}))
        assert messages(LOAD_BALANCER_INTERNAL, *objs["Service"]) == []


# --- team-namespace-gpu-quota ----------------------------------------------------------------


def namespace(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def quota(namespace_name: str, **hard: str) -> dict:
    return {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "vision-quota", "namespace": namespace_name},
            "spec": {"hard": hard}}


GPU_QUOTA = {"requests.nvidia.com/gpu": "16", "requests.cpu": "64"}


def test_team_namespace_with_a_gpu_quota_passes():
    assert messages(TEAM_NAMESPACE_GPU_QUOTA, namespace("team-vision"), quota("team-vision", **GPU_QUOTA)) == []
    assert messages(TEAM_NAMESPACE_GPU_QUOTA, namespace("cloudml-system")) == []  # not a team namespace


def test_team_namespace_without_a_gpu_quota_is_reported_on_the_namespace():
    violations = evaluate([TEAM_NAMESPACE_GPU_QUOTA], [planned(namespace("team-vision")), planned(quota("team-other", **GPU_QUOTA))])
    assert [(v.resource_name, v.message, v.fix) for v in violations] == [(
        "team-vision", 'team namespace team-vision has no ResourceQuota with spec.hard["requests.nvidia.com/gpu"]',
        'Add a ResourceQuota in namespace team-vision with spec.hard["requests.nvidia.com/gpu"] set to the team\'s GPU share.')]
    # A namespace of another name is a team's by its label.
    assert len(messages(TEAM_NAMESPACE_GPU_QUOTA, namespace("research", **{"cloudml.io/team": "research"}))) == 1


def test_a_plain_gpu_quota_does_not_count():
    assert messages(TEAM_NAMESPACE_GPU_QUOTA, namespace("team-vision"), quota("team-vision", **{"nvidia.com/gpu": "16"})) == [
        'team namespace team-vision has no ResourceQuota with spec.hard["requests.nvidia.com/gpu"]; ResourceQuota vision-quota '
        'sets spec.hard["nvidia.com/gpu"], which does not count: quotas limit extended resources only as requests.nvidia.com/gpu']


# --- dev-environment-idle-culling ------------------------------------------------------------

IDLE_MESSAGE = (f"{POD}.containers: no container runs Jupyter with --ServerApp.shutdown_no_activity_timeout=<seconds> "
                "or sets env CLOUDML_IDLE_TIMEOUT above 0 ({}), so an idle environment keeps its node (and GPU)")


def main_container_of(obj: dict) -> dict:
    return pod(obj)["containers"][0]


def test_dev_environment_culls_itself_by_jupyters_flag_or_the_env():
    flag_only = mutate(gpu_job(), lambda o: main_container_of(o).pop("env"))
    env_only = mutate(gpu_job(), lambda o: main_container_of(o).update(command=["python", "my_ide.py"]))
    # pre/post commands wrap Jupyter in a shell: the flag then is among the args.
    wrapped = mutate(flag_only, lambda o: main_container_of(o).update(command=["/bin/sh", "-c", "exec \"$@\"", "w"], args=JUPYTER))
    for obj in (flag_only, env_only, wrapped):
        assert messages(DEV_ENVIRONMENT_IDLE_CULLING, obj) == []


def test_dev_environment_that_never_stops_is_reported():
    never = mutate(gpu_job(), lambda o: main_container_of(o).update(command=["jupyter", "lab"], env=[]))
    assert findings(DEV_ENVIRONMENT_IDLE_CULLING, never) == [(
        IDLE_MESSAGE.format("sets neither"),
        "Keep cloudml's Jupyter command and set the workload's idleTimeout; a custom command must stop after "
        "CLOUDML_IDLE_TIMEOUT seconds idle.")]
    zero = mutate(never, lambda o: main_container_of(o).update(env=[{"name": "CLOUDML_IDLE_TIMEOUT", "value": "0"}]))
    assert messages(DEV_ENVIRONMENT_IDLE_CULLING, zero) == [IDLE_MESSAGE.format("sets it to 0 or less, which never stops")]
    other_kind = mutate(never, lambda o: o["spec"]["template"]["metadata"]["labels"].update({"app.kubernetes.io/component": "training"}))
    assert messages(DEV_ENVIRONMENT_IDLE_CULLING, other_kind) == []


# --- model-service-availability --------------------------------------------------------------

SERVICE_LABELS = {"app.kubernetes.io/component": "modelService", "cloudml.io/team": "vision", "cloudml.io/workload": "resnet"}
SERVICE_SELECTOR = {"cloudml.io/team": "vision", "cloudml.io/workload": "resnet"}


def deployment(**spec) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "resnet", "namespace": "team-vision", "labels": SERVICE_LABELS},
            "spec": {"selector": {"matchLabels": SERVICE_SELECTOR}, "template": {"metadata": {"labels": SERVICE_LABELS}, "spec": {}}, **spec}}


def budget(selector: dict, namespace_name: str = "team-vision") -> dict:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "resnet", "namespace": namespace_name},
            "spec": {"maxUnavailable": 1, "selector": selector}}


def scaled_object(minimum: int | None) -> dict:
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "resnet"}, "maxReplicaCount": 4}
    return {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "resnet", "namespace": "team-vision"},
            "spec": spec if minimum is None else {**spec, "minReplicaCount": minimum}}


PDB = budget({"matchLabels": SERVICE_SELECTOR})


def test_production_model_service_with_two_replicas_and_a_budget_passes():
    assert messages(MODEL_SERVICE_AVAILABILITY, deployment(replicas=2), PDB, stack="team-vision-prod") == []
    assert messages(MODEL_SERVICE_AVAILABILITY, deployment(), scaled_object(2), PDB, stack="team-vision-prod") == []
    expressions = budget({"matchExpressions": [{"key": "cloudml.io/workload", "operator": "In", "values": ["resnet", "bert"]}]})
    assert messages(MODEL_SERVICE_AVAILABILITY, deployment(replicas=3), expressions, stack="team-vision-prod") == []
    # Only production stacks are checked.
    assert messages(MODEL_SERVICE_AVAILABILITY, deployment(replicas=1), stack="team-vision") == []


def test_production_model_service_needs_two_replicas():
    assert findings(MODEL_SERVICE_AVAILABILITY, deployment(replicas=1), PDB, stack="team-vision-prod") == [(
        "spec.replicas is 1: a production model service needs at least 2 replicas",
        "Set replicas (or autoscale.minReplicas) to 2 or more.")]
    assert messages(MODEL_SERVICE_AVAILABILITY, deployment(), PDB, stack="team-vision-prod") == [
        "spec.replicas is 1: a production model service needs at least 2 replicas"]  # Kubernetes' default
    assert messages(MODEL_SERVICE_AVAILABILITY, deployment(), scaled_object(None), PDB, stack="team-vision-prod") == [
        "ScaledObject resnet spec.minReplicaCount is 0: a production model service needs at least 2 replicas"]  # KEDA's default


def test_production_model_service_needs_a_budget_selecting_its_pods():
    message = "no PodDisruptionBudget in namespace team-vision selects the pods of spec.template.metadata.labels"
    for pdb in (budget({"matchLabels": {"cloudml.io/workload": "bert"}}), budget({"matchLabels": SERVICE_SELECTOR}, "team-nlp")):
        assert findings(MODEL_SERVICE_AVAILABILITY, deployment(replicas=2), pdb, stack="team-vision-prod") == [
            (message, "Add a PodDisruptionBudget (maxUnavailable: 1) whose selector matches the Deployment's pod labels.")]


def test_a_team_stack_on_a_production_platform_is_production():
    """The team stack's own name says nothing (team-vision); the platform stack it reads does."""
    def reference(name: str) -> PlannedResource:
        return PlannedResource("pulumi:pulumi:StackReference", "vision-platform",
                               "urn:pulumi:team-vision::cloudml::pulumi:pulumi:StackReference::vision-platform", {"name": name})
    service = planned(deployment(replicas=1))
    assert evaluate([MODEL_SERVICE_AVAILABILITY], [service, reference("acme/cloudml/platform-dev")]) == []
    violations = evaluate([MODEL_SERVICE_AVAILABILITY], [service, reference("acme/cloudml/platform-prod")])
    assert [(v.resource_name, v.message) for v in violations] == [
        ("team-vision/resnet", "spec.replicas is 1: a production model service needs at least 2 replicas"),
        ("team-vision/resnet", "no PodDisruptionBudget in namespace team-vision selects the pods of spec.template.metadata.labels"),
    ]
    # A reference of another stack (or one whose name is unknown) does not count.
    other = PlannedResource("pulumi:pulumi:StackReference", "x", "urn:pulumi:team-nlp::cloudml::pulumi:pulumi:StackReference::x",
                            {"name": "acme/cloudml/platform-prod"})
    assert evaluate([MODEL_SERVICE_AVAILABILITY], [service, other, reference(UNKNOWN_STRING_VALUE)]) == []


# --- the sample stacks ---------------------------------------------------------------------


def sample_resources(plan) -> list[PlannedResource]:
    out = []
    for item in plan.objects:
        meta = item.object.get("metadata") or {}
        name = f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta.get("name", "")
        out.append(PlannedResource(type=kubernetes_type(item.object), name=name, urn=item.source, props=item.object))
    return out


@pytest.mark.parametrize("stack", ["platform-dev", "team-vision", "team-nlp"])
def test_sample_stacks_break_no_mandatory_workload_rule(sample_plans, stack):
    resources = sample_resources(sample_plans[stack])
    assert resources, "the sample plan holds Kubernetes objects"
    assert [v for v in evaluate(RULES, resources) if v.level == MANDATORY] == []
    # Their dev environments cull themselves, and their model services would pass in production too.
    production = PolicyConfig(production_stacks=["*"])
    assert evaluate([DEV_ENVIRONMENT_IDLE_CULLING, MODEL_SERVICE_AVAILABILITY], resources, production) == []


def test_sample_dev_environments_and_model_services_are_checked(sample_plans):
    """The sample test above is not vacuous: the samples hold devEnvironment pods and model services."""
    resources = sample_resources(sample_plans["team-vision"])
    dev = [r for r in resources if r.name == "team-vision/alice" and r.type == "kubernetes:batch/v1:Job"]
    assert len(dev) == 1
    never = mutate(dict(dev[0].props), lambda o: [c.update(command=["jupyter", "lab"], args=[], env=[]) for c in pod(o)["containers"]])
    assert messages(DEV_ENVIRONMENT_IDLE_CULLING, never) == [IDLE_MESSAGE.format("sets neither")]
    services = [r for r in resources if r.type == "kubernetes:apps/v1:Deployment" and r.name == "team-vision/resnet"]
    scalers = [r for r in resources if r.type.endswith(":ScaledObject") and r.name == "team-vision/resnet"]
    assert len(services) == 1 and len(scalers) == 1  # autoscaled: its ScaledObject's minReplicaCount counts
    # Without the PodDisruptionBudget the sample has, exactly that one finding remains.
    assert len(evaluate([MODEL_SERVICE_AVAILABILITY], services + scalers, PolicyConfig(production_stacks=["*"]))) == 1
