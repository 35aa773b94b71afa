"""The EKS managed add-ons that need running nodes (CoreDNS, the EBS CSI driver) and the cluster's
default StorageClass (encrypted gp3 EBS volumes).

Their pods are Deployments: EKS reports such an add-on ACTIVE only once its pods run, so creating it
before any node group exists leaves `pulumi up` waiting until the add-on times out DEGRADED. The
platform therefore builds this component after the node groups and passes them in `after`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.labels import MANAGED_BY, PART_OF
from components.platform.cluster import Cluster
from components.platform.managed_addons import addon_args, addon_with_role
from components.render import render_template

# The EBS CSI controller's service account and the AWS managed policy it needs
# (EKS user guide, "Amazon EBS CSI driver" add-on page).
EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
EBS_CSI_POLICY = "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
# The provisioner name of the EBS CSI driver the add-on installs (not EKS Auto Mode's ebs.csi.eks.amazonaws.com).
EBS_CSI_PROVISIONER = "ebs.csi.aws.com"
DEFAULT_STORAGE_CLASS = "gp3"


def storage_class_objects(platform: str) -> list[dict]:
    """The default StorageClass: encrypted gp3 EBS volumes, bound where the pod is scheduled."""
    labels = {
        "app.kubernetes.io/name": DEFAULT_STORAGE_CLASS,
        "app.kubernetes.io/instance": f"{platform}-{DEFAULT_STORAGE_CLASS}",
        "app.kubernetes.io/component": "storage",
        "app.kubernetes.io/part-of": PART_OF,
        "app.kubernetes.io/managed-by": MANAGED_BY,
    }
    return render_template(
        "platform/storageclass-gp3.yaml.j2",
        name=DEFAULT_STORAGE_CLASS,
        provisioner=EBS_CSI_PROVISIONER,
        labels=labels,
    )


class ClusterAddons(pulumi.ComponentResource):
    """Creates `<name>-coredns` (managed add-on), `<name>-ebs-csi-irsa` (IRSA role of
    kube-system/ebs-csi-controller-sa with AmazonEBSCSIDriverPolicy), `<name>-ebs-csi`
    (the aws-ebs-csi-driver managed add-on using that role) and `<name>-storage-classes`
    (a ConfigGroup holding the default `gp3` StorageClass), all after `after`.

    Outputs: `coredns`, `ebs_csi` (the add-ons, for anything that needs DNS or EBS volumes to
    depend on), `storage_class` (the default StorageClass name).
    """

    def __init__(self, name: str, cluster: Cluster, after: Sequence[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        super().__init__("cloudml:platform:ClusterAddons", name, None, opts)
        after = list(after)
        # preserve: deleting the add-on resource must not take cluster DNS away from running pods.
        self.coredns = aws.eks.Addon(
            f"{name}-coredns",
            cluster_name=cluster.cluster_name,
            preserve=True,
            **addon_args("coredns"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=after),
        )
        self.ebs_csi_role, self.ebs_csi = addon_with_role(
            "aws-ebs-csi-driver", f"{name}-ebs-csi", parent=self, cluster_name=cluster.cluster_name,
            oidc_provider_arn=cluster.oidc_provider_arn, oidc_issuer_url=cluster.oidc_issuer_url,
            service_account=EBS_CSI_SERVICE_ACCOUNT, managed_policy_arns={"ebs": EBS_CSI_POLICY}, after=after,
        )
        self.storage_class = DEFAULT_STORAGE_CLASS
        self.storage_classes = k8s.yaml.v2.ConfigGroup(
            f"{name}-storage-classes",
            objs=storage_class_objects(cluster.platform_name),
            # A default class whose driver is missing would leave every claim Pending; and the
            # provider can only act once the admins' access to the cluster exists.
            opts=pulumi.ResourceOptions(
                parent=self, provider=cluster.provider, depends_on=[self.ebs_csi, *cluster.admin_access]
            ),
        )
        self.register_outputs({"storage_class": self.storage_class})
