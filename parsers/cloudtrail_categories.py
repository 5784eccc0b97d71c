"""ECS categorization of CloudTrail events, following Elastic's AWS integration.

Elastic sets ``event.type: [info]`` for every event and overrides category/type for a fixed list of event
names; we keep the same table so dashboards and rules written for Elastic's data work on ours.
Spec strings are ``category:type,type``.
"""

from __future__ import annotations

_SPEC = {
    "AddUserToGroup": "iam:group,change",
    "AssumeRole": "authentication:info",
    "AttachGroupPolicy": "iam:group,change",
    "AttachUserPolicy": "iam:user,change",
    "ChangePassword": "iam:user,change",
    "ConsoleLogin": "authentication:info",
    "CreateAccessKey": "iam:user,change",
    "CreateBucket": "file:creation",
    "CreateGroup": "iam:group,creation",
    "CreateKeyPair": "iam:admin,creation",
    "CreateUser": "iam:user,creation",
    "CreateVirtualMFADevice": "iam:user,change",
    "DeactivateMFADevice": "iam:user,change",
    "DeleteAccessKey": "iam:user,change",
    "DeleteBucket": "file:deletion",
    "DeleteGroup": "iam:group,deletion",
    "DeleteGroupPolicy": "iam:group,change",
    "DeleteSSHPublicKey": "iam:user,change",
    "DeleteUser": "iam:user,deletion",
    "DeleteUserPermissionsBoundary": "iam:user,change",
    "DeleteUserPolicy": "iam:user,change",
    "DeleteVirtualMFADevice": "iam:user,change",
    "DetachGroupPolicy": "iam:group,change",
    "DetachUserPolicy": "iam:user,change",
    "EnableMFADevice": "iam:user,change",
    "GetGroup": "iam:group,info",
    "GetGroupPolicy": "iam:group,info",
    "GetUser": "iam:user,info",
    "GetUserPolicy": "iam:user,info",
    "ListAttachedGroupPolicies": "iam:group,info",
    "ListAttachedUserPolicies": "iam:user,info",
    "ListGroupPolicies": "iam:group,info",
    "ListGroups": "iam:group,info",
    "ListGroupsForUser": "iam:user,info",
    "ListUserPolicies": "iam:user,info",
    "ListUsers": "iam:user,info",
    "ListUserTags": "iam:user,info",
    "PutGroupPolicy": "iam:group,change",
    "PutUserPermissionsBoundary": "iam:user,change",
    "PutUserPolicy": "iam:user,change",
    "RemoveUserFromGroup": "iam:group,change",
    "SetDefaultPolicyVersion": "iam:admin,change",
    "SetSecurityTokenServicePreferences": "iam:admin,change",
    "TagUser": "iam:user,change",
    "UntagUser": "iam:user,change",
    "UpdateAccessKey": "iam:user,change",
    "UpdateAccountPasswordPolicy": "iam:admin,change",
    "UpdateGroup": "iam:group,change",
    "UpdateLoginProfile": "iam:user,change",
    "UpdateRole": "iam:admin,change",
    "UpdateSSHPublicKey": "iam:user,change",
    "UpdateUser": "iam:user,change",
}


def _expand(spec: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    category, types = spec.split(":")
    return (category,), tuple(types.split(","))


# event name -> (event.category, event.type); tuples so the shared table cannot be mutated through a document.
CATEGORIES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {k: _expand(v) for k, v in _SPEC.items()}
