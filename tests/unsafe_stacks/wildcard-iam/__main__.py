"""Deliberately unsafe: an IAM role whose inline policy allows every action on every resource (rule
iam-no-wildcards)."""

import json

import pulumi_aws as aws

role = aws.iam.Role(
    "ci-deployer",
    assume_role_policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"}, "Action": "sts:AssumeRole"}],
    }),
)

aws.iam.RolePolicy(
    "ci-deployer-everything",
    role=role.id,
    # The unsafe part: administrator access.
    policy=json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
)
