"""The platform's S3 side: the four buckets (datasets, models, checkpoints, logs) and the storage KMS
key's policy.

The policy documents and lifecycle rules are pure functions (tested on their own). `PlatformBucket`
creates one bucket with everything that makes it safe: all four public-access blocks, bucket-owner-
enforced ownership (ACLs off), SSE-KMS default encryption with the storage key and S3 Bucket Keys,
a bucket policy that denies any request not sent over TLS, a lifecycle configuration, and
versioning where the role asks for it.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

from components.errors import ConfigProblem, display_value
from components.spec import PLATFORM_KEY, PlatformSpec, StorageSpec

SseByDefault = aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs  # (long name)

BUCKET_ROLES = ("datasets", "models", "checkpoints", "logs")
# Models keep every version (rollback to any model ever served). Checkpoints are not versioned on
# purpose: training overwrites `latest` checkpoints of many GiB again and again, and versioning
# would keep every overwritten copy; their expiry rule is what bounds their cost.
VERSIONED_ROLES = ("models",)
# pulumi-aws: bucket_prefix "must be lowercase and less than or equal to 37 characters"; the
# provider appends a unique suffix to make the 63-character global name.
MAX_BUCKET_PREFIX = 37
# S3 general purpose bucket naming rules reserve these prefixes.
RESERVED_BUCKET_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
ABORT_MULTIPART_DAYS = 7
# The service-linked role FSx for Lustre uses to reach a linked bucket: one per file system,
# AWSServiceRoleForFSxS3Access_<fs-id> under this path (FSx for Lustre user guide, "Working with
# server-side encrypted Amazon S3 buckets").
FSX_S3_ROLE_PATH = "aws-service-role/s3.data-source.lustre.fsx.amazonaws.com/AWSServiceRoleForFSxS3Access_*"
FSX_S3_KMS_ACTIONS = ["kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:DescribeKey"]


def bucket_prefix(platform: str, role: str) -> str:
    """`<platform>-<role>-`, the platform name shortened (never the role) to fit S3's 37-character prefix."""
    suffix = f"-{role}-"
    return f"{platform[: MAX_BUCKET_PREFIX - len(suffix)].rstrip('-')}{suffix}"


def bucket_name_problems(spec: PlatformSpec) -> list[ConfigProblem]:
    """Platform names S3 would refuse as the start of a bucket name."""
    reserved = [p for p in RESERVED_BUCKET_PREFIXES if spec.name.startswith(p)]
    if not reserved:
        return []
    return [ConfigProblem(
        f"{PLATFORM_KEY}.name",
        f"starts with {reserved[0]!r}, which S3 reserves, and bucket names start with the platform name",
        f"choose a name that does not start with {' or '.join(repr(p) for p in RESERVED_BUCKET_PREFIXES)}",
        display_value(spec.name),
    )]


def lifecycle_rules(role: str, storage: StorageSpec) -> list[dict]:
    """The bucket's lifecycle rules: every bucket drops multipart uploads abandoned for a week
    (their parts are billed but invisible); checkpoints and logs expire after the configured days."""
    every_object: dict = {}  # an empty filter: the rule applies to every object in the bucket
    rules = [{
        "id": "abort-incomplete-multipart-uploads",
        "status": "Enabled",
        "filter": every_object,
        "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
    }]
    expiry = {"checkpoints": storage.checkpoint_expiry_days, "logs": storage.log_expiry_days}.get(role)
    if expiry is not None:
        rules.append({"id": f"expire-{role}", "status": "Enabled", "filter": every_object, "expiration": {"days": expiry}})
    return rules


def tls_only_policy(bucket_arn: str) -> str:
    """Bucket policy denying every request that is not sent over TLS, on the bucket and its objects."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [bucket_arn, f"{bucket_arn}/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    }, sort_keys=True)


def storage_key_policy(account_id: str, partition: str, region: str, dns_suffix: str,
                       lustre_bucket_prefix: str | None = None) -> str:
    """The storage key's policy: the account's IAM policies decide who uses the key (the AWS
    default key policy), plus, with FSx for Lustre linked to a bucket, FSx's S3 service-linked
    roles may use the key through S3 on that bucket only.

    FSx's role cannot be named in advance (it carries the file system id and only exists once the
    file system is linked), so the statement matches any FSx S3 role of this account by ARN, as the
    FSx for Lustre user guide does for "all Amazon FSx file systems in your account". The bucket is
    named by its prefix: the key exists before the bucket whose default encryption uses it.
    """
    statements: list[dict] = [{
        "Sid": "EnableIamPolicies",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
        "Action": "kms:*",
        "Resource": "*",
    }]
    if lustre_bucket_prefix is not None:
        statements.append({
            "Sid": "FsxLustreLinkedBucket",
            "Effect": "Allow",
            "Principal": {"AWS": "*"},
            "Action": FSX_S3_KMS_ACTIONS,
            "Resource": "*",
            "Condition": {
                "StringEquals": {"kms:CallerAccount": account_id, "kms:ViaService": f"s3.{region}.{dns_suffix}"},
                "StringLike": {
                    "aws:userid": "*:FSx",
                    # With S3 Bucket Keys the encryption context is the bucket's ARN, without them the
                    # object's: the prefix pattern matches both.
                    "kms:EncryptionContext:aws:s3:arn": f"arn:{partition}:s3:::{lustre_bucket_prefix}*",
                },
                "ArnLike": {"aws:PrincipalArn": f"arn:{partition}:iam::{account_id}:role/{FSX_S3_ROLE_PATH}"},
            },
        })
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


class PlatformBucket:
    """One platform bucket and its configuration resources, children of `parent`: `<name>`
    (the bucket), `<name>-public-access-block`, `<name>-ownership`, `<name>-encryption`,
    `<name>-policy`, `<name>-lifecycle` and, for versioned roles, `<name>-versioning`.

    The bucket is protected (per spec) and retained on delete. Its configuration resources are
    retained on delete too: a retained bucket must keep its public-access block, encryption and
    TLS-only policy when the stack lets go of it.
    """

    def __init__(self, name: str, role: str, spec: PlatformSpec, key_arn: pulumi.Input[str], parent: pulumi.Resource):
        config = pulumi.ResourceOptions(parent=parent, retain_on_delete=True)
        self.bucket = aws.s3.Bucket(
            name,
            bucket_prefix=bucket_prefix(spec.name, role),
            force_destroy=False,  # deleting a bucket must never delete the data in it
            tags={"Name": f"{spec.name}-{role}", "cloudml.io/platform": spec.name, "cloudml.io/bucket-role": role},
            opts=pulumi.ResourceOptions(parent=parent, protect=spec.protect_stateful_resources, retain_on_delete=True),
        )
        # Bucket.id is the bucket's name.
        self.name = self.bucket.id
        self.arn = self.bucket.arn
        self.public_access_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=self.bucket.id,
            block_public_acls=True,
            ignore_public_acls=True,
            block_public_policy=True,
            restrict_public_buckets=True,
            opts=config,
        )
        self.ownership = aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
            opts=config,
        )
        self.encryption = aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=SseByDefault(sse_algorithm="aws:kms", kms_master_key_id=key_arn),
                # One data key per bucket instead of a KMS call per object: cheaper and fewer throttles.
                bucket_key_enabled=True,
            )],
            opts=config,
        )
        # The policy waits for the public-access block: the block is in force before any policy is,
        # and S3 can abort concurrent configuration writes to one bucket (OperationAborted).
        self.policy = aws.s3.BucketPolicy(
            f"{name}-policy",
            bucket=self.bucket.id,
            policy=self.bucket.arn.apply(tls_only_policy),
            opts=pulumi.ResourceOptions(parent=parent, retain_on_delete=True, depends_on=[self.public_access_block]),
        )
        self.versioning = None
        if role in VERSIONED_ROLES:
            self.versioning = aws.s3.BucketVersioning(
                f"{name}-versioning",
                bucket=self.bucket.id,
                versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
                opts=config,
            )
        self.lifecycle = aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=lifecycle_rules(role, spec.storage),
            # As the provider's own example for a versioned bucket does: versioning first, then the rules.
            opts=pulumi.ResourceOptions(
                parent=parent, retain_on_delete=True, depends_on=[self.versioning] if self.versioning else None
            ),
        )
