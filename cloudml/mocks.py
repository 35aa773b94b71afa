"""Pulumi mocks for the offline plan: echo inputs, synthesize what real providers would return.

`CloudMocks` answers resource registrations and invokes with deterministic, realistic values (ids,
ARNs, endpoints, OIDC issuer, autonamed physical names) so downstream code runs unchanged; a team
stack's StackReference returns the planned platform's outputs. `RecordingMonitor` keeps what the
program asked for — type, name, parent, inputs, protect/retain flags, dependencies — which is what
the plan reports.
"""

from __future__ import annotations


import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import rpc
from pulumi.runtime.mocks import MockMonitor

from components.errors import SECRET_DISPLAY

ACCOUNT_ID = "111122223333"


class UnknownInvoke(Exception):
    """The program called a data source the offline plan cannot answer."""


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


# Resource ids as AWS writes them (prefix-hex), so the plan reads like a real preview.
_ID_PREFIXES = {
    "aws:ec2/internetGateway:InternetGateway": "igw",
    "aws:ec2/natGateway:NatGateway": "nat",
    "aws:ec2/eip:Eip": "eipalloc",
    "aws:ec2/routeTable:RouteTable": "rtb",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce",
    "aws:efs/mountTarget:MountTarget": "fsmt",
    "aws:fsx/lustreFileSystem:LustreFileSystem": "fs",
}


@dataclass
class CloudMocks(pulumi.runtime.Mocks):
    """Deterministic stand-ins for the AWS, Kubernetes and Pulumi providers."""

    stack: str
    region: str = "us-west-2"
    # name of the referenced stack -> its outputs and the names of its secret outputs
    stack_references: dict[str, tuple[dict, list[str]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The inputs of the registration this thread is handling, for RecordingMonitor (saves
        # deserializing them twice; the SDK registers from several threads at once).
        self.current = threading.local()

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict]:
        self.current.inputs = args.inputs
        typ, name, inputs = args.typ, args.name, dict(args.inputs)
        if typ == "pulumi:pulumi:StackReference":
            ref = inputs.get("name") or name
            if ref not in self.stack_references:
                raise KeyError(f"the plan has no outputs for referenced stack {ref!r}")
            outputs, secret_names = self.stack_references[ref]
            return f"{ref}", {"name": ref, "outputs": outputs, "secretOutputNames": secret_names}
        if not args.custom:
            # Components (ours and the remote ConfigGroup) have no provider state; nothing reads it back.
            return None, {}
        state = dict(inputs)
        if typ.startswith("aws:"):
            return self._aws(typ, name, state)
        if typ.startswith("kubernetes:"):
            return f"{name}-id", state
        if typ == "random:index/randomPassword:RandomPassword":
            # A stand-in of the requested length; never a real credential (the plan redacts it anyway).
            length = int(state.get("length") or 16)
            state["result"] = (_digest(typ, name, length=64) * (length // 64 + 1))[:length]
            state.setdefault("bcryptHash", f"$2a$10${_digest(name, length=53)}")
        return f"{name}-id", state

    def _aws(self, typ: str, name: str, state: dict) -> tuple[str, dict]:
        service = typ.split(":")[1].split("/")[0]
        resource = typ.rsplit(":", 1)[-1]
        physical = state.get("name") or f"{name}-{_digest(typ, name, length=7)}"
        state.setdefault("name", physical)
        state.setdefault("arn", f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{resource.lower()}/{physical}")
        state.setdefault("tagsAll", state.get("tags") or {})
        rid = physical
        if typ == "aws:ec2/vpc:Vpc":
            rid = f"vpc-{_digest(typ, name)}"
        elif typ == "aws:ec2/subnet:Subnet":
            rid = f"subnet-{_digest(typ, name)}"
        elif typ == "aws:kms/key:Key":
            rid = f"{_digest(typ, name, length=8)}-0000-4000-8000-{_digest(name, length=12)}"
            state["keyId"] = rid
            state["arn"] = f"arn:aws:kms:{self.region}:{ACCOUNT_ID}:key/{rid}"
        elif typ == "aws:iam/role:Role":
            state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:role/{physical}"
            state.setdefault("uniqueId", f"AROA{_digest(name, length=17).upper()}")
        elif typ == "aws:eks/cluster:Cluster":
            oidc = _digest(physical, length=32).upper()
            state.update({
                "arn": f"arn:aws:eks:{self.region}:{ACCOUNT_ID}:cluster/{physical}",
                "endpoint": f"https://{oidc}.gr7.{self.region}.eks.amazonaws.com",
                "certificateAuthority": {"data": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="},
                "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{self.region}.amazonaws.com/id/{oidc}"}]}],
                "status": "ACTIVE",
                "platformVersion": "eks.1",
                "vpcConfig": {**(state.get("vpcConfig") or {}), "clusterSecurityGroupId": f"sg-{_digest(typ, name)}"},
            })
        elif typ == "aws:sns/topic:Topic":
            # SNS ARNs name the topic right after the account (no resource-type part).
            state["arn"] = f"arn:aws:sns:{self.region}:{ACCOUNT_ID}:{physical}"
        elif typ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
            state["arn"] = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{str(state.get('url', '')).removeprefix('https://')}"
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            rid = f"lt-{_digest(typ, name)}"
            state.setdefault("latestVersion", 1)
            state.setdefault("defaultVersion", 1)
        elif typ in ("aws:ec2/securityGroup:SecurityGroup", "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"):
            rid = f"sg-{_digest(typ, name)}"
        elif typ in _ID_PREFIXES:
            rid = f"{_ID_PREFIXES[typ]}-{_digest(typ, name)}"
            if typ == "aws:ec2/eip:Eip":
                state.setdefault("publicIp", "203.0.113." + str(int(_digest(typ, name, length=2), 16) % 250 + 1))
        elif typ == "aws:efs/fileSystem:FileSystem":
            rid = f"fs-{_digest(typ, name)}"
            state["dnsName"] = f"{rid}.efs.{self.region}.amazonaws.com"
        elif typ == "aws:s3/bucket:Bucket":
            physical = state.get("bucket") or f"{state.get('bucketPrefix') or name + '-'}{_digest(typ, name, length=8)}"
            rid = physical
            state.update({"bucket": physical, "arn": f"arn:aws:s3:::{physical}",
                          "bucketRegionalDomainName": f"{physical}.s3.{self.region}.amazonaws.com"})
        elif typ == "aws:eks/nodeGroup:NodeGroup":
            rid = f"{state.get('clusterName')}:{physical}"
            state["resources"] = [{"autoscalingGroups": [{"name": f"eks-{physical}-{_digest(name, length=8)}"}]}]
            state["status"] = "ACTIVE"
        return rid, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        token = args.token
        if token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{z}" for z in "abcdef"]
            return {"id": self.region, "names": names, "zoneIds": [f"usw2-az{i + 1}" for i in range(6)]}
        if token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/plan", "userId": "AIDAPLAN", "id": ACCOUNT_ID}
        if token == "aws:index/getRegion:getRegion":
            return {"name": self.region, "region": self.region, "id": self.region}
        if token == "aws:ec2/getVpc:getVpc":
            # An existing VPC: the plan cannot know its CIDR; 10.0.0.0/16 stands in for it.
            return {"id": args.args.get("id"), "cidrBlock": "10.0.0.0/16", "enableDnsSupport": True,
                    "enableDnsHostnames": True, "state": "available", "ownerId": ACCOUNT_ID,
                    "arn": f"arn:aws:ec2:{self.region}:{ACCOUNT_ID}:vpc/{args.args.get('id')}"}
        if token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
        raise UnknownInvoke(f"the offline plan cannot answer the data source {token}; add it to cloudml/mocks.py")


@dataclass
class Registration:
    """One resource as the program declared it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict
    protect: bool
    retain_on_delete: bool
    depends_on: list[str]
    provider: str
    ignore_changes: list[str]
    replace_on_changes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    aliases: list[str] = field(default_factory=list)  # earlier URNs this resource takes over
    read: bool = False  # an existing resource the program reads (StackReference), not one it creates


def _alias_urns(request, urn: str) -> list[str]:
    """The aliases of a registration as URNs: computed by the SDK (`aliasURNs`), or as alias specs
    (name, type, parent URN) when the monitor takes those."""
    urns = list(request.aliasURNs)
    project_stack = urn.split("::")[:2]
    for alias in getattr(request, "aliases", []):
        if alias.HasField("urn"):
            urns.append(alias.urn)
            continue
        spec = alias.spec
        name = spec.name or request.name
        type_ = spec.type or request.type
        parent = spec.parentUrn or request.parent
        parent_type = parent.split("::")[2] if parent.count("::") >= 3 else ""
        qualified = f"{parent_type}${type_}" if parent_type and parent_type != "pulumi:pulumi:Stack" else type_
        urns.append("::".join([*project_stack, qualified, name]))
    return urns


class RecordingMonitor(MockMonitor):
    """A mock monitor that keeps every registration and the stack's outputs."""

    def __init__(self, mocks: CloudMocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self.stack_outputs: dict = {}
        self.stack_urn = ""

    def RegisterResource(self, request):  # noqa: N802 - the gRPC method name
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            self.stack_urn = response.urn
            return response
        self.registrations.append(Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=bool(request.custom),
            inputs=self.mocks.current.inputs,
            protect=bool(request.protect),
            retain_on_delete=bool(request.retainOnDelete),
            depends_on=sorted(request.dependencies),
            provider=request.provider,
            ignore_changes=list(request.ignoreChanges),
            replace_on_changes=list(request.replaceOnChanges),
            delete_before_replace=bool(request.deleteBeforeReplace),
            aliases=sorted(_alias_urns(request, response.urn)),
        ))
        return response

    def ReadResource(self, request):  # noqa: N802 - the gRPC method name
        # Reads (StackReference, `.get()`) are part of what a stack depends on: record them too.
        response = super().ReadResource(request)
        self.registrations.append(Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=True,
            inputs=rpc.deserialize_properties(request.properties),
            protect=False,
            retain_on_delete=False,
            depends_on=sorted(request.dependencies),
            provider=request.provider,
            ignore_changes=[],
            read=True,
        ))
        return response

    def RegisterResourceOutputs(self, request):  # noqa: N802 - the gRPC method name
        if request.urn == self.stack_urn:
            self.stack_outputs = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)


def redact(value: Any) -> Any:
    """A deserialized property tree with every secret replaced by the placeholder and whole
    numbers back as ints (gRPC carries every number as a double)."""
    if rpc.is_rpc_secret(value):
        return SECRET_DISPLAY
    return _map(value, redact)


def unwrap(value: Any) -> Any:
    """The plain value of a deserialized property tree (secrets unwrapped; for internal use)."""
    return _map(rpc.unwrap_rpc_secret(value), unwrap)


def _map(value: Any, again) -> Any:
    if isinstance(value, dict):
        return {k: again(v) for k, v in value.items()}
    if isinstance(value, list):
        return [again(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if type(value).__name__ == "Unknown":  # a value only a real deployment knows
        return "(known after apply)"
    return value


def secret_names(outputs: dict) -> list[str]:
    return sorted(k for k, v in outputs.items() if rpc.is_rpc_secret(v))
