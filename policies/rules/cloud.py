"""The AWS rules of the pack, in the order findings are reported: S3 (`cloud_s3`), EKS and nodes
(`cloud_eks`), IAM (`cloud_iam`), then `stateful-resources-protected`, defined here.

`stateful-resources-protected` asks for the `protect` resource option on everything that holds data:
S3 buckets and EFS/FSx file systems. `retainOnDelete` alone does not count: it keeps the data when
the resource leaves the stack, but a replacing change still swaps in a new, empty bucket or file
system without a word, and `pulumi_policy` does not even show a rule that option (its resource
options carry `protect`, not `retainOnDelete`), so accepting it would make the pack and `cloudml plan`
disagree. KMS keys are not in the list: AWS itself holds a deleted key for a 7-30 day waiting period
in which the deletion can be cancelled, and the platform's keys follow what they encrypt.
"""

from __future__ import annotations

from collections.abc import Iterator

from policies.core import MANDATORY, Finding, PlannedResource, PolicyConfig, ResourceRule, Rule
from policies.rules.cloud_eks import EKS_RULES
from policies.rules.cloud_iam import IAM_RULES
from policies.rules.cloud_s3 import S3_RULES

STATEFUL_TYPES = {
    "aws:s3/bucket:Bucket": "bucket",
    "aws:s3/bucketV2:BucketV2": "bucket",
    "aws:s3/directoryBucket:DirectoryBucket": "bucket",
    "aws:efs/fileSystem:FileSystem": "file system",
    "aws:fsx/lustreFileSystem:LustreFileSystem": "file system",
    "aws:fsx/openZfsFileSystem:OpenZfsFileSystem": "file system",
    "aws:fsx/ontapFileSystem:OntapFileSystem": "file system",
    "aws:fsx/windowsFileSystem:WindowsFileSystem": "file system",
}


def check_protected(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    if not resource.protect:
        kind = STATEFUL_TYPES.get(resource.type, "data store")
        retained = (" (retainOnDelete alone still lets a replacing change swap in a new, empty one)"
                    if resource.retain_on_delete else "")
        yield Finding(
            f"protect is not set on this {kind}: `pulumi destroy` or a replacing change removes it from the stack"
            f"{retained}",
            "Set protectStatefulResources: true in the platform config (the resource option protect=True); for a "
            "throwaway stack, disable this rule: rules: {stateful-resources-protected: disabled} in the policy "
            'settings (cloudml plan --policy-config), {"stateful-resources-protected": "disabled"} in the pack config.',
        )


PROTECTED_RULE = ResourceRule(
    name="stateful-resources-protected",
    description="S3 buckets and EFS/FSx file systems have the protect resource option set.",
    level=MANDATORY,
    types=tuple(STATEFUL_TYPES),
    check=check_protected,
    opt_out="for a throwaway stack (protectStatefulResources: false), disable the rule: rules: "
    "{stateful-resources-protected: disabled} in the policy settings (cloudml plan --policy-config), or "
    '{"stateful-resources-protected": "disabled"} in the pack config (pulumi preview --policy-pack-config)',
    config_keys=(),
)

RULES: list[Rule] = [*S3_RULES, *EKS_RULES, *IAM_RULES, PROTECTED_RULE]
