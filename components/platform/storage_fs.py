"""The platform's file systems: the shared EFS file system with its CSI driver and the
`cloudml-shared` StorageClass teams claim it through, and the optional FSx for Lustre file system
linked to the datasets bucket.

`shared_storage_class_objects` is pure (rendered from `templates/platform/storage-efs.yaml.j2`);
`SharedFilesystem` and `LustreFilesystem` create their resources as children of the Storage
component. Both file systems are encrypted with the storage KMS key, reachable only from the VPC's
CIDR on their own ports, protected (per spec) and retained on delete.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.labels import MANAGED_BY, PART_OF
from components.platform.managed_addons import addon_with_role
from components.render import RUN_AS_USER, render_template
from components.spec import NetworkSpec, PlatformSpec

# The EFS CSI driver: its provisioner name, the controller's service account when installed as the
# EKS add-on, and the AWS managed policy the EKS user guide attaches to that role.
EFS_PROVISIONER = "efs.csi.aws.com"
EFS_CSI_SERVICE_ACCOUNT = ("kube-system", "efs-csi-controller-sa")
EFS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"
SHARED_STORAGE_CLASS = "cloudml-shared"
NFS_PORT = 2049
# Dynamically provisioned volumes are EFS access points under /teams. The access point enforces
# uid/gid 1000 for every NFS call, the user the restricted team pods run as, so a pod can write
# its volume; directoryPerms 700 keeps each volume's root directory to that user.
EFS_ACCESS_POINT = {"basePath": "/teams", "directoryPerms": "700", "uid": str(RUN_AS_USER), "gid": str(RUN_AS_USER)}

# FSx for Lustre: PERSISTENT_2 because it is the deployment type that takes a customer KMS key
# (scratch file systems use an FSx-owned key), keeps data on file-server failure, and links to S3
# through data repository associations (import_path is for SCRATCH/PERSISTENT_1 only).
LUSTRE_DEPLOYMENT_TYPE = "PERSISTENT_2"
LUSTRE_VERSION = "2.15"
# MB/s per TiB of storage (PERSISTENT_2 SSD offers 125, 250, 500, 1000): 300 MB/s for the
# smallest 1.2 TiB file system, enough to keep a few GPU nodes reading.
LUSTRE_THROUGHPUT_PER_TIB = 250
# Lustre traffic: port 988 and 1018-1023 (FSx for Lustre user guide, file system access control).
LUSTRE_PORTS = {"lnet": (988, 988), "lnet-1018": (1018, 1023)}
LUSTRE_DATASETS_PATH = "/datasets"


def private_subnet_count(network: NetworkSpec) -> int:
    """How many private subnets the platform's network has (mount targets are made per subnet)."""
    return len(network.private_subnet_ids) if network.vpc_id is not None else network.availability_zones


def shared_storage_class_objects(platform: str, file_system_id: str) -> list[dict]:
    """The `cloudml-shared` StorageClass: EFS access points on the shared file system."""
    labels = {
        "app.kubernetes.io/name": SHARED_STORAGE_CLASS,
        "app.kubernetes.io/instance": f"{platform}-{SHARED_STORAGE_CLASS}",
        "app.kubernetes.io/component": "storage",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    return render_template(
        "platform/storage-efs.yaml.j2",
        name=SHARED_STORAGE_CLASS,
        labels=labels,
        provisioner=EFS_PROVISIONER,
        file_system_id=file_system_id,
        access_point=EFS_ACCESS_POINT,
    )


def _subnet(subnet_ids: pulumi.Input[Sequence[str]], index: int) -> pulumi.Output[str]:
    return pulumi.Output.from_input(subnet_ids).apply(lambda ids: ids[index])


def _vpc_only_group(name: str, description: str, vpc_id: pulumi.Input[str], vpc_cidr: pulumi.Input[str],
                    ports: dict[str, tuple[int, int]], parent: pulumi.Resource, egress: bool = False):
    """A security group admitting TCP on `ports` from the VPC's CIDR and nothing else (the provider
    removes the default allow-all egress; with `egress`, the same ports to the VPC are allowed out)."""
    child = pulumi.ResourceOptions(parent=parent)
    group = aws.ec2.SecurityGroup(name, vpc_id=vpc_id, description=description, tags={"Name": name}, opts=child)
    rules = []
    for key, (low, high) in ports.items():
        rules.append(aws.vpc.SecurityGroupIngressRule(
            f"{name}-{key}", security_group_id=group.id, cidr_ipv4=vpc_cidr, ip_protocol="tcp",
            from_port=low, to_port=high, description=f"{description} (TCP {low}-{high} from the VPC)", opts=child,
        ))
        if egress:
            rules.append(aws.vpc.SecurityGroupEgressRule(
                f"{name}-{key}-out", security_group_id=group.id, cidr_ipv4=vpc_cidr, ip_protocol="tcp",
                from_port=low, to_port=high, description=f"{description} (TCP {low}-{high} to the VPC)", opts=child,
            ))
    return group, rules


class SharedFilesystem:
    """The shared EFS file system, children of `parent`: `<name>-efs` (encrypted with the storage
    key, elastic throughput), `<name>-efs-sg` with `<name>-efs-sg-nfs` (NFS 2049 from the VPC CIDR
    only), `<name>-efs-mount-<i>` (one mount target per private subnet), `<name>-efs-csi-irsa` (IRSA
    role of kube-system/efs-csi-controller-sa with AmazonEFSCSIDriverPolicy), `<name>-efs-csi`
    (the aws-efs-csi-driver EKS add-on) and `<name>-efs-storage-class` (a ConfigGroup holding the
    `cloudml-shared` StorageClass).
    """

    def __init__(self, name: str, spec: PlatformSpec, *, key_arn: pulumi.Input[str], vpc_id: pulumi.Input[str],
                 vpc_cidr: pulumi.Input[str], subnet_ids: pulumi.Input[Sequence[str]], subnet_count: int,
                 oidc_provider_arn: pulumi.Input[str], oidc_issuer_url: pulumi.Input[str], cluster_name: pulumi.Input[str],
                 provider: k8s.Provider, after: list[pulumi.Resource], parent: pulumi.Resource):
        child = pulumi.ResourceOptions(parent=parent)
        self.file_system = aws.efs.FileSystem(
            f"{name}-efs",
            encrypted=True,
            kms_key_id=key_arn,
            performance_mode="generalPurpose",
            # Elastic: throughput follows the workload (bursty dataset reads, checkpoint writes)
            # without burst credits to run out of; AWS recommends it for most workloads.
            throughput_mode="elastic",
            tags={"Name": f"{spec.name}-shared", "cloudml.io/platform": spec.name},
            opts=pulumi.ResourceOptions(parent=parent, protect=spec.protect_stateful_resources, retain_on_delete=True),
        )
        self.security_group, self.rules = _vpc_only_group(
            f"{name}-efs-sg", f"NFS to the {spec.name} shared EFS file system", vpc_id, vpc_cidr,
            {"nfs": (NFS_PORT, NFS_PORT)}, parent,
        )
        self.mount_targets = [
            aws.efs.MountTarget(
                f"{name}-efs-mount-{i}",
                file_system_id=self.file_system.id,
                subnet_id=_subnet(subnet_ids, i),
                security_groups=[self.security_group.id],
                opts=child,
            )
            for i in range(subnet_count)
        ]
        # The controller is a Deployment: the add-on turns ACTIVE only once nodes run it (`after`).
        self.csi_role, self.csi_driver = addon_with_role(
            "aws-efs-csi-driver", f"{name}-efs-csi", parent=parent, cluster_name=cluster_name,
            oidc_provider_arn=oidc_provider_arn, oidc_issuer_url=oidc_issuer_url,
            service_account=EFS_CSI_SERVICE_ACCOUNT, managed_policy_arns={"efs": EFS_CSI_POLICY}, after=after,
        )
        self.storage_class = SHARED_STORAGE_CLASS
        self.storage_classes = k8s.yaml.v2.ConfigGroup(
            f"{name}-efs-storage-class",
            objs=self.file_system.id.apply(lambda fs_id: shared_storage_class_objects(spec.name, fs_id)),
            # A claim is only worth making once the driver can provision it and nodes can mount it.
            opts=pulumi.ResourceOptions(
                parent=parent, provider=provider, depends_on=[*after, self.csi_driver, *self.mount_targets, *self.rules]
            ),
        )


class LustreFilesystem:
    """The FSx for Lustre file system, children of `parent`: `<name>-lustre-sg` with ingress rules
    for TCP 988 and 1018-1023 from the VPC CIDR (and the same ports out to the VPC, for the file
    servers' own traffic), `<name>-lustre` (PERSISTENT_2, encrypted with the storage key, in the
    first private subnet) and `<name>-lustre-datasets` (a data repository association importing the
    datasets bucket at /datasets).
    """

    def __init__(self, name: str, spec: PlatformSpec, *, key_arn: pulumi.Input[str], vpc_id: pulumi.Input[str],
                 vpc_cidr: pulumi.Input[str], subnet_ids: pulumi.Input[Sequence[str]], datasets_bucket: pulumi.Input[str],
                 after_key_policy: list[pulumi.Resource], parent: pulumi.Resource):
        self.security_group, self.rules = _vpc_only_group(
            f"{name}-lustre-sg", f"Lustre to the {spec.name} FSx for Lustre file system", vpc_id, vpc_cidr,
            LUSTRE_PORTS, parent, egress=True,
        )
        self.file_system = aws.fsx.LustreFileSystem(
            f"{name}-lustre",
            deployment_type=LUSTRE_DEPLOYMENT_TYPE,
            storage_type="SSD",
            storage_capacity=spec.storage.lustre.storage_capacity_gib,
            per_unit_storage_throughput=LUSTRE_THROUGHPUT_PER_TIB,
            file_system_type_version=LUSTRE_VERSION,
            kms_key_id=key_arn,
            # A Lustre file system lives in one AZ: the first private subnet.
            subnet_ids=_subnet(subnet_ids, 0),
            security_group_ids=[self.security_group.id],
            tags={"Name": f"{spec.name}-lustre", "cloudml.io/platform": spec.name},
            # The rules must be in place first: FSx refuses a security group without Lustre's ports.
            opts=pulumi.ResourceOptions(
                # Retained only when protected: a retained file system keeps its network interfaces
                # in this stack's subnets and would block the VPC's deletion on a throwaway stack.
                parent=parent, protect=spec.protect_stateful_resources, retain_on_delete=spec.protect_stateful_resources,
                depends_on=self.rules
            ),
        )
        # One-way: S3 stays the source of truth for datasets. New, changed and deleted objects are
        # imported automatically; nothing is exported back, so FSx never writes to the bucket.
        self.datasets = aws.fsx.DataRepositoryAssociation(
            f"{name}-lustre-datasets",
            file_system_id=self.file_system.id,
            file_system_path=LUSTRE_DATASETS_PATH,
            data_repository_path=pulumi.Output.from_input(datasets_bucket).apply(lambda bucket: f"s3://{bucket}"),
            batch_import_meta_data_on_create=True,
            delete_data_in_filesystem=False,
            s3=aws.fsx.DataRepositoryAssociationS3Args(
                auto_import_policy=aws.fsx.DataRepositoryAssociationS3AutoImportPolicyArgs(events=["NEW", "CHANGED", "DELETED"]),
            ),
            # FSx reads the SSE-KMS objects only once the key policy admits its service-linked role.
            opts=pulumi.ResourceOptions(parent=parent, depends_on=after_key_policy),
        )
