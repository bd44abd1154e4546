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

from chalicelib.access.policy import AccessPolicy, Role
from chalicelib.audit import CallContext
from chalicelib.aws.store import AccessStore
from chalicelib.broker import Broker
from chalicelib.chat import messages
from chalicelib.chat.directory import Directory
from chalicelib.chat.slack import SlackApi, parse_command, parse_duration
from chalicelib.console import ConsoleLinks
from chalicelib.exceptions import BadRequest, RolebrokerError
from chalicelib.identity.tokens import Identity
from chalicelib.jit.breakglass import BreakGlassDesk
from chalicelib.jit.extensions import Extensions
from chalicelib.jit.model import AccessRequest
from chalicelib.jit.requests import AccessRequests
from chalicelib.validation import (
    APPROVE_FIELDS,
    BREAK_GLASS_FIELDS,
    DECISION_FIELDS,
    EXTEND_FIELDS,
    checked_request_id,
    console_service,
    request_body,
    role_name,
    validate_fields,
)

LOG = logging.getLogger(__name__)
ACCESS_LABELS = {"allowed": "allowed", "approval_required": "approval required", "mfa_required": "MFA required"}
Reply = dict[str, Any]
SLACK_PAGE = 10  # a Slack reply stays readable; the rest is a command away
REQUEST_OPTIONS = {"ticket": "ticket", "scope": "scope", "start": "start_at"}  # /aws request ... key=value


class ChatOps:
    def __init__(self, *, policy: Callable[[], AccessPolicy], broker: Broker, access: AccessRequests,
                 console: ConsoleLinks, directory: Directory, store: AccessStore, slack: SlackApi | None,
                 clock: Callable[[], datetime], glass: BreakGlassDesk | None = None,
                 extensions: Extensions | None = None) -> None:
        self._policy = policy
        self._broker = broker
        self._access = access
        self._glass = glass
        self._extensions = extensions
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
            return messages.help_reply(), False
        return messages.working_on(command.name), True

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
            elif kind == "request_changed":
                self.notify_changed(task["request_id"])
            elif kind == "break_glass_opened":
                self.notify_break_glass(task["request_id"])
            else:
                LOG.warning("unknown task kind %r", kind)
        except Exception:
            LOG.exception("task %s failed", kind)

    def command(self, form: Mapping[str, str], request_id: str) -> dict[str, Any]:
        command = parse_command(form.get("text", ""))
        context = CallContext(request_id=request_id, channel="slack", user_agent="slack")
        try:
            identity = self._directory.slack_identity(form.get("user_id", ""), self._policy(), self._slack)
            handler = getattr(self, "_cmd_" + command.name.replace("-", "_"), None)
            if handler is None:
                return messages.help_reply()
            message: Reply = handler(identity, command.args, command.rest, context, form.get("user_id", ""))
            return message
        except RolebrokerError as exc:
            return messages.warning(str(exc))

    def _cmd_roles(self, identity: Identity, args: list[str], rest: str, context: CallContext, user: str) -> Reply:
        return messages.roles_reply(identity.subject, self._broker.roles(identity), ACCESS_LABELS)

    def _cmd_console(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                     user: str) -> Reply:
        if len(args) not in (1, 2):
            raise BadRequest("usage: /aws console ROLE [SERVICE], e.g. /aws console sandbox-admin s3")
        service = console_service("service", args[1]) if len(args) == 2 else None
        return messages.console_reply(self._console.link(identity, role_name("role", args[0]), context=context,
                                                         service=service))

    def _cmd_request(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                     user: str) -> Reply:
        parts = rest.split()
        if len(parts) < 3:
            raise BadRequest("usage: /aws request ROLE[,ROLE...] DURATION [ticket=ID] [scope=NAME] [start=ISO-TIME] "
                             "REASON (e.g. /aws request prod-breakglass 2h ticket=INC-42 database down)")
        roles = parts[0].split(",")
        fields: dict[str, Any] = {"roles": roles, "duration_seconds": parse_duration(parts[1])}
        words = parts[2:]
        while words and "=" in words[0] and words[0].split("=", 1)[0] in REQUEST_OPTIONS:
            key, value = words.pop(0).split("=", 1)
            fields[REQUEST_OPTIONS[key]] = value
        fields["reason"] = " ".join(words)
        body = request_body(fields)
        request = self._access.create(identity, body["roles"], duration_seconds=body["duration_seconds"],
                                      reason=body["reason"], context=context, requester_slack=user,
                                      ticket=body.get("ticket"), scope=body.get("scope"),
                                      start_at=body.get("start_at"))
        return messages.request_filed(request.to_dict(self._clock()))

    def _cmd_requests(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                      user: str) -> Reply:
        kind = None
        if args and args[0] == "break-glass":
            kind, args = "break_glass", args[1:]
        if args and (args[0] != "more" or len(args) != 2):
            raise BadRequest("usage: /aws requests [break-glass], then /aws requests [break-glass] more TOKEN "
                             "for the next page")
        found, next_token = self._access.page(identity, limit=SLACK_PAGE, next_token=args[1] if args else None,
                                              kind=kind)
        now = self._clock()
        return messages.requests_reply([r.to_dict(now) for r in found], next_token)

    def _cmd_approve(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                     user: str) -> Reply:
        if not args:
            raise BadRequest("usage: /aws approve ID [ROLE ...] (naming roles approves only those)")
        narrowed = validate_fields({"roles": args[1:]} if len(args) > 1 else {}, APPROVE_FIELDS).get("roles")
        request = self._access.approve(identity, checked_request_id(args[0]), context=context, roles=narrowed)
        return messages.approved_reply(request.to_dict(self._clock()))

    def _cmd_break_glass(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                         user: str) -> Reply:
        parts = rest.split(maxsplit=2)
        if len(parts) < 3 or self._glass is None:
            raise BadRequest("usage: /aws break-glass ROLE TICKET REASON (e.g. /aws break-glass prod-admin INC-42 "
                             "payments down)")
        body = validate_fields({"role": parts[0], "ticket": parts[1], "reason": parts[2]}, BREAK_GLASS_FIELDS)
        request = self._glass.open(identity, body["role"], reason=body["reason"], ticket=body["ticket"],
                                   context=context, requester_slack=user)
        return messages.break_glass_reply(request.to_dict(self._clock()))

    def _cmd_review(self, identity: Identity, args: list[str], rest: str, context: CallContext, user: str) -> Reply:
        if not args or self._glass is None:
            raise BadRequest("usage: /aws review ID [NOTE]")
        parts = rest.split(maxsplit=1)
        note = validate_fields({"reason": parts[1]} if len(parts) > 1 else {}, DECISION_FIELDS).get("reason")
        request = self._glass.review(identity, checked_request_id(args[0]), note=note, context=context)
        return messages.reviewed_reply(request.to_dict(self._clock()))

    def _cmd_extend(self, identity: Identity, args: list[str], rest: str, context: CallContext, user: str) -> Reply:
        parts = rest.split(maxsplit=2)
        if len(parts) < 3 or self._extensions is None:
            raise BadRequest("usage: /aws extend ID DURATION REASON (e.g. /aws extend 0123456789ab 1h still fixing)")
        body = validate_fields({"duration_seconds": parse_duration(parts[1]), "reason": parts[2]}, EXTEND_FIELDS)
        request, done = self._extensions.extend(identity, checked_request_id(parts[0]),
                                                seconds=body["duration_seconds"], reason=body["reason"],
                                                context=context, requester_slack=user)
        return messages.extended_reply(request.to_dict(self._clock()), done)

    def _cmd_deny(self, identity: Identity, args: list[str], rest: str, context: CallContext, user: str) -> Reply:
        if not args:
            raise BadRequest("usage: /aws deny ID [REASON]")
        parts = rest.split(maxsplit=1)
        # The note is held to the API's rules for a reason: one line, no
        # control characters, at most 500 characters.
        note = validate_fields({"reason": parts[1]} if len(parts) > 1 else {}, DECISION_FIELDS).get("reason")
        request = self._access.deny(identity, checked_request_id(args[0]), note=note, context=context)
        return messages.denied_reply(request.to_dict(self._clock()))

    def _cmd_cancel(self, identity: Identity, args: list[str], rest: str, context: CallContext,
                    user: str) -> Reply:
        if len(args) != 1:
            raise BadRequest("usage: /aws cancel ID")
        request = self._access.cancel(identity, checked_request_id(args[0]), context=context)
        return messages.cancelled_reply(request.to_dict(self._clock()))

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
            request_id = checked_request_id(str(action.get("value", "")))
            if action.get("action_id") == "approve":
                self._access.approve(identity, request_id, context=context)
            elif action.get("action_id") == "deny":
                self._access.deny(identity, request_id, note=None, context=context)
            elif action.get("action_id") == "review" and self._glass is not None:
                self._glass.review(identity, request_id, note=None, context=context)
        except RolebrokerError as exc:
            self._respond(response_url, {**messages.warning(str(exc)), "replace_original": False})

    # -- copies of a request in Slack: posted once per audience, updated on every change

    def notify_created(self, request_id: str) -> None:
        """Ask the approvers; show the request, without buttons, in the role's notify channels."""
        policy = self._policy()
        request = self._store.get(request_id)
        role = policy.roles.get(request.role)
        audiences = [(policy.slack_channel, "approvers")] + [(c, "notify") for c in _notify_channels(role)]
        self._post(request, role, audiences)

    def notify_break_glass(self, request_id: str) -> None:
        """Loudly, at once: approvers (with a review button), the security channel, the notify channels."""
        policy = self._policy()
        request = self._store.get(request_id)
        role = policy.roles.get(request.role)
        audiences = [(policy.slack_channel, "approvers"), (policy.security_channel, "security")]
        self._post(request, role, audiences + [(c, "notify") for c in _notify_channels(role)])

    def _post(self, request: AccessRequest, role: Role | None, audiences: list[tuple[str | None, str]]) -> None:
        if self._slack is None:
            return
        data = request.to_dict(self._clock())
        posted: set[str] = set()
        for channel, audience in audiences:
            if not channel or channel in posted:
                continue  # one copy per channel: the first audience named for it
            posted.add(channel)
            text, blocks = self._message(data, role, audience)
            try:
                where = self._slack.post(channel, text, blocks)
            except Exception:
                LOG.exception("could not post request %s to a Slack channel", request.id)
                continue  # one channel down must not silence the others
            self._store.add_message(request.id, *where, audience)

    def notify_changed(self, request_id: str) -> None:
        """Update every copy of a request that moved without being decided (an approval, an extension)."""
        self._update_copies(self._store.get(request_id))

    def notify_decided(self, request_id: str) -> None:
        if self._slack is None:
            return
        request = self._update_copies(self._store.get(request_id))
        if request.requester_slack:
            self._slack.post(request.requester_slack, messages.requester_notice(request.to_dict(self._clock())))

    def _update_copies(self, request: AccessRequest) -> AccessRequest:
        if self._slack is None:
            return request
        role = self._policy().roles.get(request.role)
        data = request.to_dict(self._clock())
        for copy in request.messages:
            text, blocks = self._message(data, role, copy.audience)
            try:
                self._slack.update(copy.channel, copy.ts, text, blocks)
            except Exception:
                LOG.exception("could not update a Slack copy of request %s", request.id)
        return request

    @staticmethod
    def _message(data: dict[str, Any], role: Role | None, audience: str) -> tuple[str, list[dict[str, Any]]]:
        return messages.approval_request(data, description=role.description if role else "",
                                         mfa_note=bool(role and role.require_mfa), audience=audience)

    def _respond(self, response_url: str, message: dict[str, Any]) -> None:
        if self._slack is not None and response_url:
            self._slack.respond(response_url, message)



def _notify_channels(role: Role | None) -> tuple[str, ...]:
    return role.notify.channels if role and role.notify else ()
