"""Handlers of ``onboarding/user_onboarding``.

create_account fans out to three independent branches: the welcome email, the workspace (then
the team invitations), and the CRM sync. The CRM refuses reserved test domains with a
PermanentError, so with the demo's ``@example.test`` address that branch fails on its first
attempt, the others run to completion anyway (maximal progress), and the task ends in ``error``
naming ``sync_crm``: an operator can then ``tasker resolve`` or ``tasker retry`` it.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from tasker_core import PermanentError, StepContext

EMAIL = re.compile(r"[^@\s]+@([^@\s]+\.[^@\s]+|localhost)\Z")


def _id(prefix: str, *parts: object) -> str:
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).hexdigest()
    return f"{prefix}_{digest[:12]}"


def create_account(ctx: StepContext) -> dict[str, Any]:
    email = str(ctx.context["email"]).strip().lower()
    if not EMAIL.match(email):
        raise PermanentError(f"{email!r} is not an email address")
    username = re.sub(r"[^a-z0-9]+", "-", str(ctx.context["full_name"]).lower()).strip("-")
    return {"user_id": _id("usr", email), "username": username, "email": email}


def send_welcome_email(ctx: StepContext) -> dict[str, Any]:
    account = ctx.result_of("create_account")
    first_name = str(ctx.context["full_name"]).split()[0]
    return {
        "message_id": _id("msg", account["user_id"], "welcome"),
        "to": account["email"],
        "subject": f"Welcome aboard, {first_name}!",
    }


def provision_workspace(ctx: StepContext) -> dict[str, Any]:
    account = ctx.result_of("create_account")
    plan = str(ctx.context.get("plan", "free"))
    limits = ctx.step_config["plans"][plan]
    return {
        "workspace_id": _id("ws", account["user_id"]),
        "slug": account["username"],
        "plan": plan,
        "seats": int(limits["seats"]),
        "storage_gb": int(limits["storage_gb"]),
    }


def invite_team(ctx: StepContext) -> dict[str, Any]:
    workspace = ctx.result_of("provision_workspace")
    team = [str(member).strip().lower() for member in ctx.context.get("team", [])]
    invalid = [member for member in team if not EMAIL.match(member)]
    if invalid:
        raise PermanentError("cannot invite " + ", ".join(repr(m) for m in invalid))
    # The owner holds one seat; invitations beyond the plan's seats wait for an upgrade.
    free_seats = max(0, int(workspace["seats"]) - 1)
    return {
        "workspace_id": workspace["workspace_id"],
        "invited": team[:free_seats],
        "waitlisted": team[free_seats:],
    }


def sync_crm(ctx: StepContext) -> dict[str, Any]:
    account = ctx.result_of("create_account")
    domain = account["email"].rsplit("@", 1)[1]
    if domain in ctx.step_config.get("rejected_domains", []):
        raise PermanentError(
            f"CRM rejected contact {account['email']}: {domain!r} is a reserved test domain"
        )
    return {"crm_contact_id": _id("crm", account["email"]), "lifecycle_stage": "customer"}
