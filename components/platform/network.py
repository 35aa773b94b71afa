"""The platform's network: a production VPC for EKS, or an existing VPC's subnets.

A new VPC gets, per AZ, a private subnet (nodes and pods; the VPC CNI gives every pod a VPC address,
so these are large) and a public subnet (load balancers and NAT gateways only, so small); an internet
gateway; NAT gateways with Elastic IPs (one per AZ, or a single one); route tables (public -> internet
gateway, private -> NAT); a free S3 gateway endpoint on the private route tables; and the VPC's default
security group emptied. An existing VPC is used as given: nothing is created.

`subnet_layout` is the CIDR plan (pure, unit-tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Network, ip_network

import pulumi
import pulumi_aws as aws

from components.errors import ConfigError, ConfigProblem
from components.spec import PLATFORM_KEY, NetworkSpec

MAX_AZS = 6  # NetworkSpec.availability_zones allows 2-6
SMALLEST_PREFIX = 28  # /28 is the smallest subnet AWS allows (16 addresses, 11 usable)
# AZ ids whose subnets EKS refuses for a cluster (EKS user guide, "VPC and subnet requirements").
# Zone ids (unlike names) are the same in every account; each belongs to one region only.
EKS_UNSUPPORTED_ZONE_IDS = ["use1-az3", "usw1-az2", "cac1-az3"]


@dataclass(frozen=True)
class SubnetLayout:
    """CIDRs of the private and public subnets, index i = AZ i."""

    private: list[str]
    public: list[str]


def subnet_layout(vpc_cidr: IPv4Network, count: int) -> SubnetLayout:
    """Carve `count` private and `count` public subnets out of the VPC.

    The VPC is split into eight blocks. AZ i's private subnet is block i, from the bottom (a /19 of a
    /16). Public subnets are an eighth of a block (a /22 of a /16), never smaller than /28, and sit at
    the top of the VPC in an area with room for six of them; AZ i gets the i-th. Everything between
    stays free for growth. Adding an AZ later only appends subnets: existing CIDRs do not move.
    Only where six private blocks and the public area cannot both fit (a /24 with 6 AZs) private
    subnets are halved until they do (/28, as large as the public ones).

    10.40.0.0/16, 3 AZs: private 10.40.0.0/19, 10.40.32.0/19, 10.40.64.0/19;
    public 10.40.232.0/22, 10.40.236.0/22, 10.40.240.0/22.
    """
    if not 1 <= count <= MAX_AZS:
        raise ValueError(f"count must be 1 to {MAX_AZS}, got {count}")
    base, total = int(vpc_cidr.network_address), vpc_cidr.num_addresses
    public_prefix = min(vpc_cidr.prefixlen + 6, SMALLEST_PREFIX)
    public_size = 2 ** (32 - public_prefix)
    public_area = total - MAX_AZS * public_size  # offset of the public area from the VPC's start
    private_prefix = vpc_cidr.prefixlen + 3
    while count * 2 ** (32 - private_prefix) > public_area:
        private_prefix += 1
    if private_prefix > SMALLEST_PREFIX:
        raise ValueError(f"{vpc_cidr} is too small for {count} private and public subnets of at least /{SMALLEST_PREFIX}")
    private_size = 2 ** (32 - private_prefix)

    def block(offset: int, prefix: int) -> str:
        return str(ip_network((base + offset, prefix)))

    return SubnetLayout(
        private=[block(i * private_size, private_prefix) for i in range(count)],
        public=[block(public_area + i * public_size, public_prefix) for i in range(count)],
    )


def _zone(names: list[str], index: int, wanted: int) -> str:
    if index >= len(names):
        raise ConfigError([ConfigProblem(
            f"{PLATFORM_KEY}.network.availabilityZones",
            f"asks for {wanted} AZs, but the region has {len(names)} available",
            f"set availabilityZones to {len(names)} or fewer",
            str(wanted),
        )])
    return names[index]


class Network(pulumi.ComponentResource):
    """The cluster's network.

    New VPC (no `vpcId`), for n AZs (i = 0..n-1):
      `<name>-vpc` (DNS support and hostnames on), `<name>-default-sg` (the VPC's default security
      group with every rule removed), `<name>-igw`;
      `<name>-public-<i>` / `<name>-private-<i>` subnets (no public IP mapping in either);
      `<name>-nat-eip-<k>` + `<name>-nat-<k>` in public subnet k (k = each AZ for perAz, 0 for single);
      `<name>-public-rt` with `<name>-public-default-route` (0.0.0.0/0 -> IGW) and
      `<name>-public-rta-<i>`; `<name>-private-rt-<i>` with `<name>-private-default-route-<i>`
      (0.0.0.0/0 -> the AZ's NAT, or the single NAT) and `<name>-private-rta-<i>`;
      `<name>-s3-endpoint` (S3 gateway endpoint on every private route table).
    Existing VPC (`vpcId`): creates nothing.

    Outputs: `vpc_id`, `vpc_cidr`, `private_subnet_ids`, `public_subnet_ids` (may be empty).
    """

    def __init__(self, name: str, spec: NetworkSpec, cluster_name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:Network", name, None, opts)
        self.vpc: aws.ec2.Vpc | None = None
        self.private_subnets: list[aws.ec2.Subnet] = []
        self.public_subnets: list[aws.ec2.Subnet] = []
        self.internet_gateway: aws.ec2.InternetGateway | None = None
        self.nat_gateways: list[aws.ec2.NatGateway] = []
        self.public_route_table: aws.ec2.RouteTable | None = None
        self.private_route_tables: list[aws.ec2.RouteTable] = []
        self.s3_endpoint: aws.ec2.VpcEndpoint | None = None
        # The private subnets' way out (routes to NAT): nodes need it to pull images and join, and
        # the controllers that clean up AWS objects on destroy need it until they are gone.
        self.egress_ready: list[pulumi.Resource] = []
        if spec.vpc_id is not None:
            self.vpc_id: pulumi.Output[str] = pulumi.Output.from_input(spec.vpc_id)
            self.vpc_cidr: pulumi.Output[str] = aws.ec2.get_vpc_output(
                id=spec.vpc_id, opts=pulumi.InvokeOptions(parent=self)).cidr_block
            self.private_subnet_ids: pulumi.Output[list[str]] = pulumi.Output.from_input(list(spec.private_subnet_ids))
            self.public_subnet_ids: pulumi.Output[list[str]] = pulumi.Output.from_input(list(spec.public_subnet_ids))
        else:
            self._new_vpc(name, spec, cluster_name)
        self.register_outputs({
            "vpc_id": self.vpc_id,
            "vpc_cidr": self.vpc_cidr,
            "private_subnet_ids": self.private_subnet_ids,
            "public_subnet_ids": self.public_subnet_ids,
        })

    def _new_vpc(self, name: str, spec: NetworkSpec, cluster_name: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        count = spec.availability_zones
        layout = subnet_layout(spec.vpc_cidr, count)
        cluster_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}
        self.vpc = vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=str(spec.vpc_cidr),
            enable_dns_hostnames=True,  # EKS requires DNS hostnames and resolution, or nodes can't register
            enable_dns_support=True,
            tags={"Name": f"{cluster_name}-vpc"},
            opts=child,
        )
        # Nothing uses the default security group; left open it lets anything placed in it talk to
        # everything else in it (AWS Config rule vpc-default-security-group-closed). Adopting it
        # removes all its rules.
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
            tags={"Name": f"{cluster_name}-default-do-not-use"}, opts=child,
        )
        self.internet_gateway = igw = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{cluster_name}-igw"}, opts=child)

        # Only default AZs: opt-in Local Zones and Wavelength Zones are not for EKS subnets, nor the
        # AZ ids where EKS refuses cluster subnets.
        zones = aws.get_availability_zones_output(
            state="available",
            filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
            exclude_zone_ids=EKS_UNSUPPORTED_ZONE_IDS,
            opts=pulumi.InvokeOptions(parent=self),
        )

        def subnet(role: str, i: int, cidr: str, tags: dict[str, str]) -> aws.ec2.Subnet:
            return aws.ec2.Subnet(
                f"{name}-{role}-{i}",
                vpc_id=vpc.id,
                cidr_block=cidr,
                availability_zone=zones.names.apply(lambda names: _zone(names, i, count)),
                # Never auto-assign public IPs: nodes live in private subnets, load balancers and NAT
                # gateways bring their own addresses, anything else launched here stays private.
                map_public_ip_on_launch=False,
                tags={"Name": f"{cluster_name}-{role}-{i}", **tags, **cluster_tag},
                opts=child,
            )

        # Tags let the AWS Load Balancer Controller find the subnets for internet-facing / internal LBs.
        self.public_subnets = [subnet("public", i, c, {"kubernetes.io/role/elb": "1"}) for i, c in enumerate(layout.public)]
        self.private_subnets = [subnet("private", i, c, {"kubernetes.io/role/internal-elb": "1"})
                                for i, c in enumerate(layout.private)]

        self.public_route_table = public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id, tags={"Name": f"{cluster_name}-public"}, opts=child)
        # Routes are aws.ec2.Route resources, never inline `routes` (the provider forbids mixing both
        # on one table); the S3 endpoint adds its prefix-list routes itself via route_table_ids.
        aws.ec2.Route(f"{name}-public-default-route", route_table_id=public_rt.id,
                      destination_cidr_block="0.0.0.0/0", gateway_id=igw.id, opts=child)
        for i, public in enumerate(self.public_subnets):
            aws.ec2.RouteTableAssociation(f"{name}-public-rta-{i}", subnet_id=public.id, route_table_id=public_rt.id, opts=child)

        # perAz: an AZ outage takes only that AZ's egress down; single: one NAT (cheaper), cross-AZ traffic.
        nat_count = count if spec.nat_gateways == "perAz" else 1
        after_igw = pulumi.ResourceOptions(parent=self, depends_on=[igw])  # EIPs and NAT need the IGW attached
        for k in range(nat_count):
            eip = aws.ec2.Eip(f"{name}-nat-eip-{k}", domain="vpc", tags={"Name": f"{cluster_name}-nat-{k}"}, opts=after_igw)
            self.nat_gateways.append(aws.ec2.NatGateway(
                f"{name}-nat-{k}",
                allocation_id=eip.id,
                subnet_id=self.public_subnets[k].id,
                connectivity_type="public",
                tags={"Name": f"{cluster_name}-nat-{k}"},
                opts=after_igw,
            ))

        # One private route table per AZ in both modes, so switching natGateways only changes routes.
        for i, private in enumerate(self.private_subnets):
            rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{i}", vpc_id=vpc.id, tags={"Name": f"{cluster_name}-private-{i}"}, opts=child)
            nat = self.nat_gateways[i if spec.nat_gateways == "perAz" else 0]
            self.egress_ready.append(aws.ec2.Route(f"{name}-private-default-route-{i}", route_table_id=rt.id,
                                                   destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.id, opts=child))
            self.egress_ready.append(aws.ec2.RouteTableAssociation(
                f"{name}-private-rta-{i}", subnet_id=private.id, route_table_id=rt.id, opts=child))
            self.private_route_tables.append(rt)

        # S3 gateway endpoint: free, and keeps dataset/checkpoint (and ECR layer) traffic off the
        # NAT gateways, which bill per GB.
        region = aws.get_region_output(opts=pulumi.InvokeOptions(parent=self)).region
        self.s3_endpoint = aws.ec2.VpcEndpoint(
            f"{name}-s3-endpoint",
            vpc_id=vpc.id,
            service_name=region.apply(lambda r: f"com.amazonaws.{r}.s3"),
            vpc_endpoint_type="Gateway",
            route_table_ids=[rt.id for rt in self.private_route_tables],
            tags={"Name": f"{cluster_name}-s3"},
            opts=child,
        )

        self.vpc_id = vpc.id
        self.vpc_cidr = vpc.cidr_block
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in self.private_subnets])
        self.public_subnet_ids = pulumi.Output.all(*[s.id for s in self.public_subnets])
