"""The ``/aws`` Slack command and the approval buttons, on top of the same
use cases as the HTTP API (``Broker``, ``AccessRequests``, ``ConsoleLinks``).

``acknowledge`` runs inside Slack's 3-second window and does no I/O; ``run``
does the work in the background worker and answers through Slack's
``response_url`` or the Web API. Replies are ephemeral: only the person who
typed the command sees them. Credentials never go to Slack; a console link
goes only to the person who asked, ephemerally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from chalicelib.access.policy import AccessPolicy
from chalicelib.audit import CallContext
from chalicelib.aws.store import AccessStore
from chalicelib.broker import Broker
from chalicelib.chat.directory import Directory
from chalicelib.chat.slack import HELP, SlackApi, decided_line, ephemeral, parse_command, parse_duration, request_blocks
from chalicelib.console import ConsoleLinks
from chalicelib.exceptions import BadRequest, RolebrokerError
from chalicelib.identity.tokens import Identity
from chalicelib.jit.requests import AccessRequests
from chalicelib.validation import REQUEST_FIELDS, role_name, validate_fields

LOG = logging.getLogger(__name__)
ACCESS_LABELS = {"allowed": "allowed", "approval_required": "approval required", "mfa_required": "MFA required"}


class ChatOps:
    def __init__(self, *, policy: Callable[[], AccessPolicy], broker: Broker, access: AccessRequests,
                 console: ConsoleLinks, directory: Directory, store: AccessStore, slack: SlackApi | None,
                 clock: Callable[[], datetime]) -> None:
        self._policy = policy
        self._broker = broker
        self._access = access
        self._console = console
        self._directory = directory
        self._store = store
        self._slack = slack
        self._clock = clock

    # -- inside Slack's 3 seconds

    @staticmethod
    def acknowledge(form: Mapping[str, str]) -> tuple[dict[str, Any], bool]:
        """The immediate answer, and whether the worker must do the rest."""
        command = parse_command(form.get("text", ""))
        if command.name == "help":
            return ephemeral(HELP), False
        return ephemeral(f":hourglass_flowing_sand: working on `/aws {command.name}` ..."), True

    # -- in the worker

    def run(self, task: Mapping[str, Any]) -> None:
        kind = task.get("kind")
        try:
            if kind == "command":
                form = task["form"]
                self._respond(form.get("response_url", ""), self.command(form, task.get("request_id", "slack")))
            elif kind == "interaction":
                self.interaction(task["payload"], task.get("request_id", "slack"))
            elif kind == "request_created":
                self.notify_created(task["request_id"])
            elif kind == "request_decided":
                self.notify_decided(task["request_id"])
            else:
                LOG.warning("unknown task kind %r", kind)
        except Exception:
            LOG.exception("task %s failed", kind)

    def command(self, form: Mapping[str, str], request_id: str) -> dict[str, Any]:
        command = parse_command(form.get("text", ""))
        context = CallContext(request_id=request_id, channel="slack", user_agent="slack")
        try:
            identity = self._directory.slack_identity(form.get("user_id", ""), self._policy(), self._slack)
            handler = getattr(self, f"_cmd_{command.name}", None)
            if handler is None:
                return ephemeral(HELP)
            message: dict[str, Any] = handler(identity, command.args, command.rest, context,
                                              form.get("user_id", ""))
            return message
        except RolebrokerError as exc:
            return ephemeral(f":warning: {exc}")

    def _cmd_roles(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                   user: str) -> dict[str, Any]:
        roles = self._broker.roles(identity)
        if not roles:
            return ephemeral(f"No roles for {identity.subject}. If you expected some, sign in once with "
                             "`rolebroker login` so the broker knows your groups.")
        lines = [f"• `{r['name']}` — {r['account']} {r['account_id']} ({r['region']}): "
                 f"{_access_label(r['access'])}" for r in roles]
        return ephemeral(f"Roles for {identity.subject}:\n" + "\n".join(lines))

    def _cmd_console(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                     user: str) -> dict[str, Any]:
        if len(args) != 1:
            raise BadRequest("usage: /aws console ROLE")
        link = self._console.link(identity, role_name("role", args[0]), context=context)
        return ephemeral(f"<{link['url']}|Open the AWS console as {link['role']}> "
                         f"(link valid until {link['expires_at']}; only you can see this)")

    def _cmd_request(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                     user: str) -> dict[str, Any]:
        parts = rest.split(maxsplit=2)
        if len(parts) < 3:
            raise BadRequest("usage: /aws request ROLE DURATION REASON (e.g. /aws request prod-breakglass 2h INC-42)")
        body = validate_fields({"role": parts[0], "duration_seconds": parse_duration(parts[1]), "reason": parts[2]},
                               REQUEST_FIELDS)
        request = self._access.create(identity, body["role"], duration_seconds=body["duration_seconds"],
                                      reason=body["reason"], context=context, requester_slack=user)
        return ephemeral(f"Request `{request.id}` for *{request.role}* is pending; approvers have been asked.")

    def _cmd_requests(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                      user: str) -> dict[str, Any]:
        now = self._clock()
        requests = self._access.mine_and_approvable(identity)
        if not requests:
            return ephemeral("No access requests for you or waiting for you.")
        lines = [f"• `{r.id}` {r.requester} → *{r.role}* ({r.duration_seconds // 60} min): {r.status_at(now)}"
                 for r in requests]
        return ephemeral("\n".join(lines))

    def _cmd_approve(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                     user: str) -> dict[str, Any]:
        if len(args) != 1:
            raise BadRequest("usage: /aws approve ID")
        request = self._access.approve(identity, args[0], context=context)
        return ephemeral(f"Approved `{request.id}`: {request.requester} has *{request.role}* until "
                         f"{request.grant_until.isoformat() if request.grant_until else '?'}.")

    def _cmd_deny(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                  user: str) -> dict[str, Any]:
        if not args:
            raise BadRequest("usage: /aws deny ID [REASON]")
        note = rest.split(maxsplit=1)[1] if len(rest.split(maxsplit=1)) > 1 else None
        request = self._access.deny(identity, args[0], note=note, context=context)
        return ephemeral(f"Denied `{request.id}` ({request.requester}, {request.role}).")

    def interaction(self, payload: Mapping[str, Any], request_id: str) -> None:
        actions = payload.get("actions") or []
        user = (payload.get("user") or {}).get("id", "")
        response_url = payload.get("response_url", "")
        if payload.get("type") != "block_actions" or not actions:
            return
        action = actions[0]
        context = CallContext(request_id=request_id, channel="slack", user_agent="slack")
        try:
            identity = self._directory.slack_identity(user, self._policy(), self._slack)
            if action.get("action_id") == "approve":
                self._access.approve(identity, str(action.get("value", "")), context=context)
            elif action.get("action_id") == "deny":
                self._access.deny(identity, str(action.get("value", "")), note=None, context=context)
        except RolebrokerError as exc:
            self._respond(response_url, {**ephemeral(f":warning: {exc}"), "replace_original": False})

    def notify_created(self, request_id: str) -> None:
        policy = self._policy()
        channel = policy.slack_channel
        if self._slack is None or not channel:
            return
        request = self._store.get(request_id)
        role = policy.roles.get(request.role)
        data = request.to_dict(self._clock())
        text = f"Access request {request.id}: {request.requester} asks for {request.role}"
        posted = self._slack.post(channel, text, request_blocks(data, mfa_note=bool(role and role.require_mfa)))
        self._store.add_message(request.id, *posted)

    def notify_decided(self, request_id: str) -> None:
        if self._slack is None:
            return
        request = self._store.get(request_id)
        data = request.to_dict(self._clock())
        text = f"Access request {request.id}: {decided_line(data)}"
        for channel, ts in request.messages:
            self._slack.update(channel, ts, text, request_blocks(data, mfa_note=False))
        if request.requester_slack:
            self._slack.post(request.requester_slack,
                             f"Your request `{request.id}` for *{request.role}*: {decided_line(data)}")

    def _respond(self, response_url: str, message: dict[str, Any]) -> None:
        if self._slack is not None and response_url:
            self._slack.respond(response_url, message)


def _access_label(access: str) -> str:
    if access.startswith("granted_until:"):
        return f"granted until {access.split(':', 1)[1]}"
    return ACCESS_LABELS.get(access, access)
