"""`iam-no-wildcards`: no IAM policy of the stack allows every action, or write actions on every
resource.

Checked: the `policy` of `aws:iam/policy:Policy`, `rolePolicy`, `userPolicy` and `groupPolicy`,
each `inlinePolicies[].policy` of `aws:iam/role:Role`, and attachments of AWS managed policies known
to grant wildcards (AdministratorAccess, PowerUserAccess, `*FullAccess`). A role's
`assumeRolePolicy` is not checked: it is a trust policy (who may assume the role), not a grant of
permissions. A policy that is not known (a JSON string computed from other resources' outputs
during preview) is skipped; `pulumi up` validates it again once it is known.

An Allow statement violates the rule when
- its Action is `*` (or `*:*`), whatever its Resource and Condition; or
- it allows a write action (see `is_write_action`; an Allow with `NotAction` allows nearly every
  action, so counts as write) on Resource `*` (or NotResource, or an ARN whose every part after the
  service is a wildcard, such as `arn:aws:s3:::*`) without a scoping Condition (`scoping_condition`):
  this is how least-privilege policies of AWS and the add-ons grant writes they cannot name in
  advance (the Cluster Autoscaler resizes only Auto Scaling groups tagged as the cluster's).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

from policies.core import MANDATORY, Finding, PlannedResource, PolicyConfig, ResourceRule
from policies.rules.cloud_common import is_unknown, items, mapping, policy_document, statements, strings

POLICY_TYPES = ("aws:iam/policy:Policy", "aws:iam/rolePolicy:RolePolicy", "aws:iam/userPolicy:UserPolicy",
                "aws:iam/groupPolicy:GroupPolicy")
ROLE = "aws:iam/role:Role"
ATTACHMENT_TYPES = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment",
                    "aws:iam/userPolicyAttachment:UserPolicyAttachment",
                    "aws:iam/groupPolicyAttachment:GroupPolicyAttachment",
                    "aws:iam/policyAttachment:PolicyAttachment")

# An action writes when its verb (the part after `service:`) starts with one of these words
# (case-insensitive, as IAM matches actions). `Batch` and `Admin` are looked through: BatchWriteItem
# and AdminCreateUser write, BatchGetItem and AdminGetUser read. Read verbs (Get, List, Describe,
# Head, Search, Scan, Query, Lookup, Download, Decrypt, GenerateDataKey, ...) are not listed; an
# unrecognised verb is treated as a read.
WRITE_VERBS = (
    "Abort", "Accept", "Activate", "Add", "Allocate", "Apply", "Assign", "Associate", "Assume", "Attach",
    "Authorize", "Cancel", "Change", "Copy", "Create", "Deactivate", "Decrease", "Delete", "Deploy", "Deregister",
    "Detach", "Disable", "Disassociate", "Enable", "Execute", "Import", "Increase", "Invoke", "Modify", "Pass", "Post",
    "Publish", "Purchase", "Put", "Reboot", "Register", "Reject", "Release", "Remove", "Replace", "Request", "Reset",
    "Restore", "Resume", "Retire", "Revoke", "Rotate", "Run", "Send", "Set", "Start", "Stop", "Suspend", "Tag",
    "Terminate", "Unassign", "Untag", "Update", "Upload", "Write",
)
_WRITE = tuple(v.lower() for v in WRITE_VERBS)
LOOKED_THROUGH = ("batch", "admin")
# A Condition scopes a write on "*" only when it requires a value of a key that ties the request to
# resources the principal is meant to touch: a resource or request tag (how the add-ons mark what
# they own), or one of a few service keys the platform's own policies need (the Load Balancer
# Controller's ec2:Vpc and ec2:CreateAction, iam:AWSServiceName for a service-linked role). Other
# keys do not: aws:ResourceAccount is the principal's own account (every resource it can reach),
# and arbitrary service keys (iam:PassedToService, ec2:Region, s3:prefix) limit something else.
SCOPING_KEY_PREFIXES = ("aws:resourcetag/", "aws:requesttag/")
SCOPING_KEYS = ("ec2:vpc", "ec2:createaction", "iam:awsservicename")
# Operators that require the key to hold a value: they fail when it is absent. Negated operators
# (StringNotEquals, ...) hold for every other value; `...IfExists`, `ForAllValues:` and
# `ForAnyValue:` variants are left out (the first two hold when the key is absent). Null counts
# only with "false" (the key must be present: a tagged resource).
SCOPING_OPERATORS = ("StringEquals", "StringLike", "ArnEquals", "ArnLike")
# AWS managed policies that grant wildcards: AdministratorAccess is `"Action": "*"`, PowerUserAccess
# an Allow with NotAction on `*`, and the `<Service>FullAccess` policies `<service>:*` on `*`.
_MANAGED_POLICY = re.compile(r"^arn:aws[a-z-]*:iam::aws:policy/(?:[\w+=,.@-]+/)*([\w+=,.@-]+)$")


def is_write_action(action: str) -> bool:
    """Whether an action pattern may match a write action: `s3:*`, `ec2:Create*`, `iam:PassRole`."""
    service, _, verb = action.lower().partition(":")
    if not verb:
        return service == "*"
    for prefix in LOOKED_THROUGH:
        if verb.startswith(prefix) and len(verb) > len(prefix) and verb[len(prefix)] not in "*?":
            verb = verb[len(prefix):]
    literal = re.split(r"[*?]", verb, maxsplit=1)[0]
    if literal != verb and any(w.startswith(literal) for w in _WRITE):
        return True  # a wildcard that may complete to a write verb: `*`, `De*`, `Put*`
    return literal.startswith(_WRITE)


def scoping_condition(condition: Any) -> bool:
    """Whether a Condition limits the resources a statement applies to: a positive operator
    (SCOPING_OPERATORS, or Null "false") on a resource/request tag key or a SCOPING_KEYS key, with a
    value that is not "*" (StringLike "*" matches anything). An unknown Condition or value (a preview
    of a document built from other outputs) is not judged: it counts as scoping."""
    if is_unknown(condition):
        return True
    for operator, block in mapping(condition).items():
        if operator not in (*SCOPING_OPERATORS, "Null"):
            continue
        for key, value in mapping(block).items():
            key = key.lower()
            if not (key.startswith(SCOPING_KEY_PREFIXES) or key in SCOPING_KEYS):
                continue
            # IAM compares strings; a JSON boolean (Null: {key: false}) means its string form.
            values = [str(v).lower() if isinstance(v, bool) else v for v in (items(value) or [value])]
            values = [v for v in values if isinstance(v, str)]
            if operator == "Null":
                if values and all(is_unknown(v) or v.lower() == "false" for v in values):
                    return True
            elif values and all(is_unknown(v) or v.strip("*") for v in values):
                return True
    return False


def _every_resource(resource: str) -> bool:
    """`*`, or an ARN wildcarded after the service: `arn:aws:s3:::*`, `arn:aws:s3:::*/*`."""
    if resource == "*":
        return True
    parts = resource.split(":", 5)
    return len(parts) == 6 and parts[0] == "arn" and all(set(p) <= set("*/") for p in parts[3:])


def statement_findings(document: Mapping[str, Any], field: str) -> Iterator[Finding]:
    for path, statement in statements(document):
        if statement.get("Effect") != "Allow":
            continue
        where = f"{field}.{path}"
        actions = strings(statement.get("Action"))
        if any(a in ("*", "*:*") for a in actions):
            yield Finding(f'{where}.Action is "*": it allows every action of every service',
                          'List the actions the principal needs instead of "*".')
            continue
        if "NotResource" in statement:
            reach = "NotResource (every resource but those listed)"
        else:
            wild = [r for r in strings(statement.get("Resource")) if _every_resource(r)]
            if not wild:
                continue
            reach = f'Resource "{wild[0]}"'
        if scoping_condition(statement.get("Condition")):
            continue
        if "NotAction" in statement:
            granted = f"every action but NotAction {', '.join(strings(statement.get('NotAction')))}"
        else:
            writes = [a for a in actions if is_write_action(a)]
            if not writes:
                continue
            granted = f"write actions {', '.join(writes)}"
        yield Finding(
            f"{where} allows {granted} on {reach} without a Condition that scopes them",
            "Name the resources (ARNs) the write actions apply to, or add a Condition that scopes them "
            '(StringEquals or Null "false" on aws:ResourceTag/..., aws:RequestTag/..., or ec2:Vpc).',
        )


def _managed_policy_finding(arn: Any, field: str) -> Finding | None:
    match = _MANAGED_POLICY.match(arn) if isinstance(arn, str) else None
    if match is None:
        return None
    name = match.group(1)
    grants = {
        "AdministratorAccess": 'every action ("Action": "*")',
        "PowerUserAccess": 'every action but IAM, Organizations and Account management on "*"',
    }.get(name, 'every action of its service on "*"' if name.endswith("FullAccess") else None)
    if grants is None:
        return None
    return Finding(f"{field} attaches the AWS managed policy {name}, which allows {grants}",
                   "Attach a policy that lists the actions and resources the principal needs.")


def check_iam(resource: PlannedResource, config: PolicyConfig) -> Iterator[Finding]:
    props = resource.props
    if resource.type in POLICY_TYPES:
        if (document := policy_document(props.get("policy"))) is not None:
            yield from statement_findings(document, "policy")
    elif resource.type == ROLE:
        # assumeRolePolicy is deliberately not checked: a trust policy, not a permission grant.
        for i, inline in enumerate(items(props.get("inlinePolicies"))):
            inline = mapping(inline)
            name = inline.get("name")
            field = f"inlinePolicies[{i}] ({name})" if isinstance(name, str) and name else f"inlinePolicies[{i}]"
            if (document := policy_document(inline.get("policy"))) is not None:
                yield from statement_findings(document, f"{field}.policy")
        for i, arn in enumerate(items(props.get("managedPolicyArns"))):
            if (finding := _managed_policy_finding(arn, f"managedPolicyArns[{i}]")) is not None:
                yield finding
    elif not is_unknown(props.get("policyArn")):
        if (finding := _managed_policy_finding(props.get("policyArn"), "policyArn")) is not None:
            yield finding


IAM_RULES = [
    ResourceRule(
        name="iam-no-wildcards",
        description='No IAM policy allows "Action": "*", nor write actions on "Resource": "*" unless a Condition '
        "scopes them (a resource/request tag, or ec2:Vpc, ec2:CreateAction, iam:AWSServiceName).",
        level=MANDATORY,
        types=(*POLICY_TYPES, ROLE, *ATTACHMENT_TYPES),
        check=check_iam,
        opt_out='none: mandatory (scope a write on "*" with StringEquals/StringLike/ArnEquals/ArnLike, or Null '
        '"false", on aws:ResourceTag/..., aws:RequestTag/..., ec2:Vpc, ec2:CreateAction or iam:AWSServiceName)',
        config_keys=(),
    ),
]
