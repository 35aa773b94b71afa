"""Network: the CIDR plan (pure) and the component's exact child contract under the plan's mocks.

Pins what makes the VPC safe and working for EKS: no public IP mapping anywhere, private subnets
egress only through NAT, the S3 endpoint on the private route tables, the subnet tags the AWS Load
Balancer Controller discovers subnets by, only default AZs, and nothing created for an existing VPC.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pulumi
import pytest

from cloudml.engine import run_program
from cloudml.mocks import CloudMocks, UnknownInvoke, unwrap
from cloudml.plan import resource_record
from cloudml.stackfile import StackFile
from components.errors import ConfigError
from components.platform.network import EKS_UNSUPPORTED_ZONE_IDS, Network, subnet_layout
from components.spec import NetworkSpec

GET_VPC = "aws:ec2/getVpc:getVpc"
GET_AZS = "aws:index/getAvailabilityZones:getAvailabilityZones"
EXISTING_VPC = "vpc-0123456789abcdef0"
EXISTING_PRIVATE = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
EXISTING_PUBLIC = ["subnet-0123456789abcdef2"]
# What cloudml/mocks.py should answer for aws:ec2/getVpc:getVpc (see test_plan_mocks_answer_get_vpc).
MOCK_EXISTING_VPC_CIDR = "10.0.0.0/16"


def run(build) -> tuple[dict[str, dict], dict]:
    """Run `build` under the plan's mocks; return (resources by name, stack outputs unwrapped)."""
    stack = StackFile(name="unit", path=Path("Pulumi.unit.yaml"), config={"aws:region": "us-west-2"})
    result = run_program(stack, program=build)
    return {r.name: resource_record(r) for r in result.registrations}, unwrap(result.outputs)


def new_vpc(nat: str = "perAz", azs: int = 3):
    """A build function for a new 10.40.0.0/16 VPC that exports the ids the tests compare against."""

    def build():
        net = Network("net", NetworkSpec.model_validate({"vpcCidr": "10.40.0.0/16", "availabilityZones": azs, "natGateways": nat}),
                      "ml-dev")
        pulumi.export("vpc_id", net.vpc_id)
        pulumi.export("vpc_cidr", net.vpc_cidr)
        pulumi.export("private_subnet_ids", net.private_subnet_ids)
        pulumi.export("public_subnet_ids", net.public_subnet_ids)
        pulumi.export("igw", net.internet_gateway.id)
        pulumi.export("nats", pulumi.Output.all(*[n.id for n in net.nat_gateways]))
        pulumi.export("public_rt", net.public_route_table.id)
        pulumi.export("private_rts", pulumi.Output.all(*[rt.id for rt in net.private_route_tables]))

    return build


def children(resources: dict[str, dict]) -> list[tuple[str, str]]:
    return sorted((r["type"], name) for name, r in resources.items())


def expected_children(nat_count: int, azs: int = 3) -> list[tuple[str, str]]:
    per_az = [
        ("aws:ec2/subnet:Subnet", "net-private-{i}"),
        ("aws:ec2/subnet:Subnet", "net-public-{i}"),
        ("aws:ec2/routeTable:RouteTable", "net-private-rt-{i}"),
        ("aws:ec2/route:Route", "net-private-default-route-{i}"),
        ("aws:ec2/routeTableAssociation:RouteTableAssociation", "net-private-rta-{i}"),
        ("aws:ec2/routeTableAssociation:RouteTableAssociation", "net-public-rta-{i}"),
    ]
    return sorted([
        ("cloudml:platform:Network", "net"),
        ("aws:ec2/vpc:Vpc", "net-vpc"),
        ("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", "net-default-sg"),
        ("aws:ec2/internetGateway:InternetGateway", "net-igw"),
        ("aws:ec2/routeTable:RouteTable", "net-public-rt"),
        ("aws:ec2/route:Route", "net-public-default-route"),
        ("aws:ec2/vpcEndpoint:VpcEndpoint", "net-s3-endpoint"),
        *[(t, n.format(i=i)) for i in range(azs) for t, n in per_az],
        *[("aws:ec2/eip:Eip", f"net-nat-eip-{k}") for k in range(nat_count)],
        *[("aws:ec2/natGateway:NatGateway", f"net-nat-{k}") for k in range(nat_count)],
    ])


@pytest.fixture(scope="module")
def per_az():
    return run(new_vpc("perAz"))


@pytest.fixture(scope="module")
def single():
    return run(new_vpc("single"))


@pytest.fixture
def invokes(monkeypatch):
    """Record every invoke (token, args); answer getVpc like cloudml/mocks.py should, if it does not yet."""
    calls: list[tuple[str, dict]] = []
    original = CloudMocks.call

    def call(self, args):
        calls.append((args.token, dict(args.args)))
        try:
            return original(self, args)
        except UnknownInvoke:
            if args.token != GET_VPC:
                raise
            return {"id": args.args["id"], "cidrBlock": MOCK_EXISTING_VPC_CIDR}

    monkeypatch.setattr(CloudMocks, "call", call)
    return calls


# --- the CIDR plan ------------------------------------------------------------------------------


def test_layout_of_the_sample_vpc():
    """10.40.0.0/16 with 3 AZs: private /19s from the bottom (unchanged from the foundation's layout,
    so existing subnets are not replaced), public /22s in the top area."""
    layout = subnet_layout(IPv4Network("10.40.0.0/16"), 3)
    assert layout.private == ["10.40.0.0/19", "10.40.32.0/19", "10.40.64.0/19"]
    assert layout.public == ["10.40.232.0/22", "10.40.236.0/22", "10.40.240.0/22"]


def test_layout_of_the_smallest_vpc_with_most_azs():
    """A /24 with 6 AZs: twelve /28s (the smallest subnet AWS allows), private ones halved to fit."""
    layout = subnet_layout(IPv4Network("10.1.2.0/24"), 6)
    assert layout.private == [f"10.1.2.{16 * i}/28" for i in range(6)]
    assert layout.public == [f"10.1.2.{160 + 16 * i}/28" for i in range(6)]


@pytest.mark.parametrize("prefix", range(16, 25))
@pytest.mark.parametrize("azs", range(2, 7))
def test_layout_is_sound_for_every_allowed_vpc(prefix, azs):
    """For every VPC size and AZ count the spec allows: all subnets inside the VPC, none overlapping,
    none smaller than /28, and private subnets never smaller than public ones."""
    vpc = IPv4Network(f"10.0.0.0/{prefix}")
    layout = subnet_layout(vpc, azs)
    private = [IPv4Network(c) for c in layout.private]
    public = [IPv4Network(c) for c in layout.public]
    assert len(private) == len(public) == azs
    subnets = private + public
    assert all(s.subnet_of(vpc) and s.prefixlen <= 28 for s in subnets)
    assert not any(a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1:])
    assert private[0].num_addresses >= public[0].num_addresses


def test_adding_an_az_keeps_existing_subnets():
    """Growing availabilityZones appends subnets and moves none, so no subnet (or the cluster in it) is
    replaced; the single documented exception is a /24 going to 6 AZs, where private subnets shrink."""
    moved = []
    for prefix in range(16, 25):
        vpc = IPv4Network(f"10.0.0.0/{prefix}")
        for azs in range(2, 6):
            before, after = subnet_layout(vpc, azs), subnet_layout(vpc, azs + 1)
            if after.private[:azs] != before.private or after.public[:azs] != before.public:
                moved.append((prefix, azs + 1))
    assert moved == [(24, 6)]


# --- a new VPC ----------------------------------------------------------------------------------


def test_per_az_children_are_exactly_these(per_az):
    """perAz with 3 AZs: VPC, default SG, IGW, 3+3 subnets, 3 EIPs + 3 NATs, 1 public + 3 private route
    tables with their default routes and associations, the S3 endpoint; all parented to the component."""
    resources, _ = per_az
    assert children(resources) == expected_children(nat_count=3)
    assert all(r["parent"].endswith("::net") for name, r in resources.items() if name != "net")


def test_single_nat_children_are_exactly_these(single):
    """single: the same set with exactly one EIP and one NAT gateway."""
    resources, _ = single
    assert children(resources) == expected_children(nat_count=1)


def test_vpc_has_dns_and_subnets_are_carved_tagged_and_never_public_ip(per_az):
    """DNS support/hostnames on (EKS needs both); each subnet has its planned CIDR and AZ, no public IP
    mapping, the LB-controller role tag (elb / internal-elb), the cluster tag and a Name."""
    resources, _ = per_az
    vpc = resources["net-vpc"]["inputs"]
    assert (vpc["cidrBlock"], vpc["enableDnsSupport"], vpc["enableDnsHostnames"]) == ("10.40.0.0/16", True, True)
    layout = subnet_layout(IPv4Network("10.40.0.0/16"), 3)
    for role, cidrs, role_tag in (("private", layout.private, "kubernetes.io/role/internal-elb"),
                                  ("public", layout.public, "kubernetes.io/role/elb")):
        for i, cidr in enumerate(cidrs):
            subnet = resources[f"net-{role}-{i}"]["inputs"]
            assert subnet["cidrBlock"] == cidr
            assert subnet["availabilityZone"] == f"us-west-2{'abc'[i]}"
            assert subnet["mapPublicIpOnLaunch"] is False
            assert subnet["tags"] == {"Name": f"ml-dev-{role}-{i}", role_tag: "1", "kubernetes.io/cluster/ml-dev": "shared"}


def test_per_az_routes(per_az):
    """Public route table: 0.0.0.0/0 -> IGW, associated with every public subnet. Private route table i:
    0.0.0.0/0 -> NAT i (and no IGW route), associated with private subnet i. NAT k sits in public
    subnet k with its own VPC Elastic IP, created after the IGW."""
    resources, out = per_az
    public_route = resources["net-public-default-route"]["inputs"]
    assert public_route == {"routeTableId": out["public_rt"], "destinationCidrBlock": "0.0.0.0/0", "gatewayId": out["igw"]}
    for i in range(3):
        route = resources[f"net-private-default-route-{i}"]["inputs"]
        assert route == {"routeTableId": out["private_rts"][i], "destinationCidrBlock": "0.0.0.0/0", "natGatewayId": out["nats"][i]}
        assert resources[f"net-private-rta-{i}"]["inputs"] == {"subnetId": out["private_subnet_ids"][i], "routeTableId": out["private_rts"][i]}
        assert resources[f"net-public-rta-{i}"]["inputs"] == {"subnetId": out["public_subnet_ids"][i], "routeTableId": out["public_rt"]}
    routes = [r["inputs"] for r in resources.values() if r["type"] == "aws:ec2/route:Route"]
    assert [r["routeTableId"] for r in routes if "gatewayId" in r] == [out["public_rt"]], "only the public table reaches the IGW"
    igw_urn = resources["net-igw"]["urn"]
    for k in range(3):
        eip, nat = resources[f"net-nat-eip-{k}"], resources[f"net-nat-{k}"]
        assert eip["inputs"]["domain"] == "vpc"
        assert nat["inputs"]["subnetId"] == out["public_subnet_ids"][k]
        assert nat["inputs"]["connectivityType"] == "public"
        assert igw_urn in eip["dependsOn"] and igw_urn in nat["dependsOn"]
    assert len({resources[f"net-nat-{k}"]["inputs"]["allocationId"] for k in range(3)}) == 3, "each NAT has its own EIP"


def test_single_nat_serves_every_private_route_table(single):
    """single: every private route table's default route targets the one NAT, in public subnet 0."""
    resources, out = single
    [nat] = out["nats"]
    assert resources["net-nat-0"]["inputs"]["subnetId"] == out["public_subnet_ids"][0]
    for i in range(3):
        assert resources[f"net-private-default-route-{i}"]["inputs"]["natGatewayId"] == nat


def test_s3_gateway_endpoint_on_private_route_tables(per_az):
    """The S3 endpoint is a (free) Gateway endpoint for this region's S3 on exactly the private route tables."""
    resources, out = per_az
    endpoint = resources["net-s3-endpoint"]["inputs"]
    assert endpoint["vpcEndpointType"] == "Gateway"
    assert endpoint["serviceName"] == "com.amazonaws.us-west-2.s3"
    assert endpoint["vpcId"] == out["vpc_id"]
    assert endpoint["routeTableIds"] == out["private_rts"]
    assert out["public_rt"] not in endpoint["routeTableIds"]


def test_default_security_group_is_emptied(per_az):
    """The VPC's default security group is adopted with no ingress and no egress rules."""
    resources, out = per_az
    sg = resources["net-default-sg"]["inputs"]
    assert (sg["vpcId"], sg.get("ingress", []), sg.get("egress", [])) == (out["vpc_id"], [], [])


def test_new_vpc_outputs(per_az):
    """Outputs: the VPC's id and CIDR, and the subnet ids in AZ order."""
    _, out = per_az
    assert out["vpc_id"].startswith("vpc-")
    assert out["vpc_cidr"] == "10.40.0.0/16"
    assert len(out["private_subnet_ids"]) == len(out["public_subnet_ids"]) == 3
    assert all(s.startswith("subnet-") for s in out["private_subnet_ids"] + out["public_subnet_ids"])
    assert not set(out["private_subnet_ids"]) & set(out["public_subnet_ids"])


def test_only_default_azs_where_eks_runs(invokes):
    """The AZ lookup asks for available, non-opt-in zones (no Local/Wavelength Zones) and excludes the
    AZ ids EKS refuses for cluster subnets."""
    run(new_vpc())
    [args] = [a for token, a in invokes if token == GET_AZS]
    assert args["state"] == "available"
    assert args["filters"] == [{"name": "opt-in-status", "values": ["opt-in-not-required"]}]
    assert args["excludeZoneIds"] == EKS_UNSUPPORTED_ZONE_IDS == ["use1-az3", "usw1-az2", "cac1-az3"]


def test_more_azs_than_the_region_has_is_a_config_error(monkeypatch):
    """Asking for 3 AZs in a region with 2 raises one ConfigError naming the field, the count and the fix."""
    original = CloudMocks.call

    def two_zones(self, args):
        answer = original(self, args)
        if args.token == GET_AZS:
            answer = {**answer, "names": answer["names"][:2], "zoneIds": answer["zoneIds"][:2]}
        return answer

    monkeypatch.setattr(CloudMocks, "call", two_zones)
    with pytest.raises(ConfigError) as error:
        run(new_vpc(azs=3))
    assert str(error.value) == (
        "1 problem in the stack config:\n"
        "  - cloudml:platform.network.availabilityZones: asks for 3 AZs, but the region has 2 available (got 3). "
        "Fix: set availabilityZones to 2 or fewer"
    )


# --- an existing VPC ----------------------------------------------------------------------------


def existing_vpc(public: list[str]):
    def build():
        spec = NetworkSpec.model_validate({"vpcId": EXISTING_VPC, "privateSubnetIds": EXISTING_PRIVATE, "publicSubnetIds": public})
        net = Network("net", spec, "ml-dev")
        pulumi.export("outputs", pulumi.Output.all(vpc_id=net.vpc_id, vpc_cidr=net.vpc_cidr,
                                                   private=net.private_subnet_ids, public=net.public_subnet_ids))
    return build


@pytest.mark.parametrize("public", [EXISTING_PUBLIC, []])
def test_existing_vpc_creates_nothing(invokes, public):
    """With vpcId the component creates no resource; ids come from config as given (public may be
    empty) and the CIDR is read from the VPC itself (getVpc with that id)."""
    resources, out = run(existing_vpc(public))
    assert children(resources) == [("cloudml:platform:Network", "net")]
    assert out["outputs"] == {"vpc_id": EXISTING_VPC, "vpc_cidr": MOCK_EXISTING_VPC_CIDR,
                              "private": EXISTING_PRIVATE, "public": public}
    assert [a["id"] for token, a in invokes if token == GET_VPC] == [EXISTING_VPC]
    assert GET_AZS not in [token for token, _ in invokes]


def test_plan_mocks_answer_get_vpc():
    """The offline plan can plan a platform on an existing VPC: its mocks answer getVpc with the
    asked-for id and a CIDR (Network.vpc_cidr for an existing VPC comes from this invoke)."""
    answer = CloudMocks(stack="unit").call(pulumi.runtime.MockCallArgs(GET_VPC, {"id": EXISTING_VPC}, ""))
    assert answer["id"] == EXISTING_VPC
    assert answer["cidrBlock"] == MOCK_EXISTING_VPC_CIDR
