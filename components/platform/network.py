"""The platform's network: a new VPC with one private subnet per AZ, or an existing VPC's subnets.

Foundation scope: the VPC and private subnets the cluster and node groups sit in, tagged for EKS
internal load balancers. Public subnets, NAT gateways and VPC endpoints are the platform issue's.
"""

from __future__ import annotations

from ipaddress import IPv4Network

import pulumi
import pulumi_aws as aws

from components.errors import ConfigError, ConfigProblem
from components.spec import PLATFORM_KEY, NetworkSpec


def private_subnet_cidrs(vpc_cidr: IPv4Network, count: int) -> list[str]:
    """Split the VPC into eight equal blocks and give the first `count` to private subnets
    (the rest stay free for public subnets and growth)."""
    blocks = list(vpc_cidr.subnets(prefixlen_diff=3))
    return [str(b) for b in blocks[:count]]


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
    """Creates (new VPC only) `<name>-vpc` and `<name>-private-<i>` subnets, one per AZ.

    Outputs: `vpc_id`, `private_subnet_ids`.
    """

    def __init__(self, name: str, spec: NetworkSpec, cluster_name: str, opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.vpc: aws.ec2.Vpc | None = None
        self.private_subnets: list[aws.ec2.Subnet] = []
        if spec.vpc_id is not None:
            self.vpc_id = pulumi.Output.from_input(spec.vpc_id)
            self.private_subnet_ids = pulumi.Output.from_input(list(spec.private_subnet_ids))
        else:
            self.vpc = aws.ec2.Vpc(
                f"{name}-vpc",
                cidr_block=str(spec.vpc_cidr),
                enable_dns_hostnames=True,  # EKS private endpoints and IRSA need DNS in the VPC
                enable_dns_support=True,
                tags={"Name": f"{cluster_name}-vpc"},
                opts=child,
            )
            zones = aws.get_availability_zones_output(state="available", opts=pulumi.InvokeOptions(parent=self))
            for i, cidr in enumerate(private_subnet_cidrs(spec.vpc_cidr, spec.availability_zones)):
                self.private_subnets.append(aws.ec2.Subnet(
                    f"{name}-private-{i}",
                    vpc_id=self.vpc.id,
                    cidr_block=cidr,
                    availability_zone=zones.names.apply(lambda names, i=i: _zone(names, i, spec.availability_zones)),
                    map_public_ip_on_launch=False,
                    tags={
                        "Name": f"{cluster_name}-private-{i}",
                        "kubernetes.io/role/internal-elb": "1",
                        f"kubernetes.io/cluster/{cluster_name}": "shared",
                    },
                    opts=child,
                ))
            self.vpc_id = self.vpc.id
            self.private_subnet_ids = pulumi.Output.all(*[s.id for s in self.private_subnets])
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids})
