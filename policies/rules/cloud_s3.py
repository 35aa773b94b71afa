"""The S3 rules: every bucket of the stack has all four public-access blocks, KMS default encryption
and a TLS-only bucket policy.

In pulumi-aws v7 these settings are separate resources (`BucketPublicAccessBlock`,
`BucketServerSideEncryptionConfiguration`, `BucketPolicy`), so the rules are stack rules that join
each configuration resource to its bucket. The join, first that applies:

1. by value: the configuration's `bucket` input equals the bucket's name (its `bucket` prop: the
   input when the name is explicit, the output in a stack validation of existing resources);
2. by Pulumi naming: the configuration is named `<bucket resource name>-<suffix>` and has the same
   parent (how the platform's `PlatformBucket` names them) — unless the known values contradict it;
3. by prefix: the configuration's `bucket` value is the bucket's `bucketPrefix` plus a generated
   suffix without dashes (how the provider and the offline plan's mocks name prefixed buckets).

(2) is what makes the rules work in a real preview of a new stack, where a configuration's `bucket`
input is the id of a bucket not created yet: unknown, so no value can be compared. (1) makes them
independent of naming whenever values are known. A bucket with no configuration joined is reported
on the bucket; a configuration with a wrong setting on the configuration (where the fix goes). A
setting that is unknown (a policy computed from the bucket's ARN during preview) is not judged:
`pulumi up` validates the resource again when it is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from fnmatch import fnmatchcase

from policies.core import MANDATORY, Finding, PlannedResource, PolicyConfig, StackRule
from policies.rules.cloud_common import is_true, is_unknown, items, mapping, policy_document, quoted, statements, strings

BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")  # v7: Bucket; BucketV2 is its deprecated alias
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
ENCRYPTION_TYPES = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2",
)
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")

Pair = tuple[PlannedResource, Finding]


# --- joining configuration resources to their buckets ---------------------------------------


def _could_be(bucket: PlannedResource, target: object) -> bool:
    """Whether the configuration's `bucket` value may name this bucket (True when either is unknown)."""
    if not isinstance(target, str) or is_unknown(target):
        return True
    name, prefix = bucket.props.get("bucket"), bucket.props.get("bucketPrefix")
    if isinstance(name, str) and not is_unknown(name):
        return name == target
    if isinstance(prefix, str) and not is_unknown(prefix):
        return target.startswith(prefix)
    return True


def _owner(config: PlannedResource, buckets: Sequence[PlannedResource]) -> PlannedResource | None:
    target = config.props.get("bucket")
    known_target = isinstance(target, str) and not is_unknown(target)
    if known_target:
        exact = [b for b in buckets if b.props.get("bucket") == target]
        if exact:
            return exact[0]
    named = [b for b in buckets
             if b.parent == config.parent and config.name.startswith(f"{b.name}-") and _could_be(b, target)]
    if named:
        return max(named, key=lambda b: len(b.name))
    if known_target:
        prefixed = [
            b for b in buckets
            if isinstance(p := b.props.get("bucketPrefix"), str) and p
            and target.startswith(p) and "-" not in target[len(p):]
        ]
        if len(prefixed) == 1:
            return prefixed[0]
    return None


def buckets_with(resources: Iterable[PlannedResource],
                 types: Sequence[str]) -> list[tuple[PlannedResource, list[PlannedResource]]]:
    """Every bucket of the stack with the configuration resources of `types` joined to it."""
    resources = list(resources)
    buckets = [r for r in resources if r.type in BUCKET_TYPES]
    joined: dict[str, list[PlannedResource]] = {b.urn: [] for b in buckets}
    for config in resources:
        if config.type in types and (owner := _owner(config, buckets)) is not None:
            joined[owner.urn].append(config)
    return [(b, joined[b.urn]) for b in buckets]


def _bucket_name(bucket: PlannedResource, config: PlannedResource | None = None) -> str | None:
    for value in ((config.props.get("bucket") if config else None), bucket.props.get("bucket")):
        if isinstance(value, str) and value and not is_unknown(value):
            return value
    return None


# --- s3-bucket-public-access-blocked --------------------------------------------------------


def check_public_access(resources: list[PlannedResource], config: PolicyConfig) -> Iterator[Pair]:
    for bucket, blocks in buckets_with(resources, (PUBLIC_ACCESS_BLOCK,)):
        if not blocks:
            yield bucket, Finding(
                f"no {PUBLIC_ACCESS_BLOCK} for this bucket: nothing in the stack keeps {', '.join(BLOCK_FLAGS)} on",
                f"Add a BucketPublicAccessBlock on this bucket with {', '.join(f'{f}: true' for f in BLOCK_FLAGS)}.",
            )
        for block in blocks:
            off = [f for f in BLOCK_FLAGS if not is_true(block.props.get(f)) and not is_unknown(block.props.get(f))]
            if off:
                yield block, Finding(
                    f"{', '.join(off)} {'is' if len(off) == 1 else 'are'} not true (bucket {bucket.name}): "
                    "the bucket can be made public",
                    f"Set {', '.join(f'{f}: true' for f in off)}.",
                )


# --- s3-bucket-kms-encrypted ----------------------------------------------------------------


def _kms_problems(rules: list[tuple[str, object]], container: str) -> list[str]:
    """What keeps these SSE rules ((field path, rule) pairs) from being SSE-KMS."""
    defaults = [(path, mapping(mapping(rule).get("applyServerSideEncryptionByDefault"))) for path, rule in rules]
    defaults = [(path, default) for path, default in defaults if default]
    if not defaults:
        return [f"{container} has no applyServerSideEncryptionByDefault: objects get S3-managed keys (SSE-S3), not KMS"]
    problems = []
    for path, default in defaults:
        algorithm = default.get("sseAlgorithm")
        if not is_unknown(algorithm) and algorithm not in KMS_ALGORITHMS:
            problems.append(f"{path}.applyServerSideEncryptionByDefault.sseAlgorithm is {quoted(algorithm)}, "
                            f"not {' or '.join(KMS_ALGORITHMS)}")
    return problems


KMS_SETTING = 'applyServerSideEncryptionByDefault.sseAlgorithm: "aws:kms" with kmsMasterKeyId: <the storage key ARN>'
KMS_FIX = f"Set {KMS_SETTING}."


def check_kms(resources: list[PlannedResource], config: PolicyConfig) -> Iterator[Pair]:
    for bucket, configs in buckets_with(resources, ENCRYPTION_TYPES):
        # v7's Bucket still takes a deprecated inline configuration with one `rule`.
        inline = mapping(bucket.props.get("serverSideEncryptionConfiguration"))
        if not configs and not inline:
            yield bucket, Finding(
                f"no {ENCRYPTION_TYPES[0]} for this bucket: objects get S3-managed keys (SSE-S3), not KMS",
                f"Add a BucketServerSideEncryptionConfiguration on this bucket with {KMS_SETTING}.",
            )
        if inline and not is_unknown(inline.get("rule")):
            path = "serverSideEncryptionConfiguration.rule"
            for problem in _kms_problems([(path, inline.get("rule"))], path):
                yield bucket, Finding(problem, KMS_FIX)
        for resource in configs:
            if not is_unknown(resource.props.get("rules")):
                rules = [(f"rules[{i}]", rule) for i, rule in enumerate(items(resource.props.get("rules")))]
                for problem in _kms_problems(rules, "rules"):
                    yield resource, Finding(problem, KMS_FIX)


# --- s3-bucket-tls-only ---------------------------------------------------------------------


def _covers(patterns: list[str], name: str | None, objects: bool) -> bool:
    if name is None:  # the bucket's name is unknown: any bucket-level (object-level) pattern will do
        return any(p.endswith("/*") if objects else "/" not in p.partition(":::")[2] for p in patterns)
    suffix = f"{name}/*" if objects else name
    return any(fnmatchcase(f"arn:{partition}:s3:::{suffix}", p) for p in patterns for partition in PARTITIONS)


def _insecure_transport_condition(statement) -> bool:
    for operator in ("Bool", "BoolIfExists"):
        for key, value in mapping(mapping(statement.get("Condition")).get(operator)).items():
            values = strings(value) or [value]  # "false", false or ["false"]
            if key.lower() == "aws:securetransport" and any(str(v).lower() == "false" for v in values):
                return True
    return False


def tls_gaps(document, name: str | None) -> tuple[str, list[str]] | None:
    """None when a statement denies every S3 action to everyone on the bucket and its objects when
    aws:SecureTransport is false; else (the closest statement's path or "", what it lacks)."""
    best: tuple[str, list[str]] | None = None
    for path, statement in statements(document):
        if statement.get("Effect") != "Deny" or not _insecure_transport_condition(statement):
            continue
        principal = statement.get("Principal")
        missing = []
        if not (principal == "*" or "*" in strings(mapping(principal).get("AWS"))):
            missing.append('Principal "*"')
        if not {a.lower() for a in strings(statement.get("Action"))} & {"*", "s3:*"}:
            missing.append('Action "s3:*"')
        resources = strings(statement.get("Resource"))
        bucket_arn = f"arn:aws:s3:::{name or '<bucket>'}"
        if not _covers(resources, name, objects=False):
            missing.append(f"Resource {bucket_arn}")
        if not _covers(resources, name, objects=True):
            missing.append(f"Resource {bucket_arn}/*")
        if not missing:
            return None
        if best is None or len(missing) < len(best[1]):
            best = (path, missing)
    return best or ("", [])


TLS_FIX = ('Add the bucket policy statement {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": '
           '[<bucket ARN>, "<bucket ARN>/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}.')


def _tls_finding(field: str, gaps: tuple[str, list[str]]) -> Finding:
    path, missing = gaps
    if not path:
        return Finding(f'{field} has no Deny statement with Condition Bool "aws:SecureTransport": "false": '
                       "S3 accepts requests over plain HTTP", TLS_FIX)
    return Finding(f"{field}.{path} denies requests without TLS, but not for {', '.join(missing)}", TLS_FIX)


def check_tls(resources: list[PlannedResource], config: PolicyConfig) -> Iterator[Pair]:
    for bucket, policies in buckets_with(resources, (BUCKET_POLICY,)):
        inline = bucket.props.get("policy")  # v7's Bucket still takes a deprecated inline policy
        if not policies and inline is None:
            yield bucket, Finding(f"no {BUCKET_POLICY} for this bucket: S3 accepts requests over plain HTTP", TLS_FIX)
        sources = [(bucket, inline, None)] if inline is not None else []
        sources += [(policy, policy.props.get("policy"), policy) for policy in policies]
        for resource, value, joined in sources:
            document = policy_document(value)
            if document is None:
                continue  # unknown during preview (computed from the bucket's ARN); judged at `pulumi up`
            if (gaps := tls_gaps(document, _bucket_name(bucket, joined))) is not None:
                yield resource, _tls_finding("policy", gaps)


S3_RULES = [
    StackRule(
        name="s3-bucket-public-access-blocked",
        description="Every S3 bucket has a public-access block with blockPublicAcls, blockPublicPolicy, "
        "ignorePublicAcls and restrictPublicBuckets all true.",
        level=MANDATORY,
        check=check_public_access,
        opt_out="none: mandatory (serve public content through CloudFront with origin access control instead)",
        config_keys=(),
    ),
    StackRule(
        name="s3-bucket-kms-encrypted",
        description="Every S3 bucket's default encryption is SSE-KMS (sseAlgorithm aws:kms or aws:kms:dsse).",
        level=MANDATORY,
        check=check_kms,
        opt_out="none: mandatory",
        config_keys=(),
    ),
    StackRule(
        name="s3-bucket-tls-only",
        description="Every S3 bucket's policy denies s3:* to every principal on the bucket and its objects "
        "when aws:SecureTransport is false.",
        level=MANDATORY,
        check=check_tls,
        opt_out="none: mandatory",
        config_keys=(),
    ),
]
