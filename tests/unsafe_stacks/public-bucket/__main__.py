"""Deliberately unsafe: a bucket whose public-access block is switched off, so a bucket policy or an
ACL can make it public (rule s3-bucket-public-access-blocked).

Everything else is as the guardrails want it: KMS encryption, a TLS-only policy, protected."""

import json

import pulumi
import pulumi_aws as aws

NAME = "unsafe-shared-datasets"

key = aws.kms.Key("datasets-key", enable_key_rotation=True, deletion_window_in_days=30)
bucket = aws.s3.Bucket("datasets", bucket=NAME, opts=pulumi.ResourceOptions(protect=True, retain_on_delete=True))
aws.s3.BucketServerSideEncryptionConfiguration(
    "datasets-encryption",
    bucket=NAME,
    rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "aws:kms", "kms_master_key_id": key.arn},
            "bucket_key_enabled": True}],
)
aws.s3.BucketPolicy(
    "datasets-tls-only",
    bucket=NAME,
    policy=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "DenyPlainHttp", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
        "Resource": [f"arn:aws:s3:::{NAME}", f"arn:aws:s3:::{NAME}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }]}),
)
# The unsafe part: every public-access block off.
aws.s3.BucketPublicAccessBlock(
    "datasets-public-access-block",
    bucket=NAME,
    block_public_acls=False,
    block_public_policy=False,
    ignore_public_acls=False,
    restrict_public_buckets=False,
)
