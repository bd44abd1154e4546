"""The /aws command and the buttons, one layer down from Slack: which use case each command calls, with
exactly which arguments, what it answers, and how the copies of a request in Slack are posted and updated.
Every collaborator is a Mock with its class's spec; the flow tests run the real ones."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from unittest.mock import Mock

import pytest

from chalicelib.access.policy import AccessPolicy, Account, Role
from chalicelib.access.workflow import Notify
from chalicelib.audit import CallContext
from chalicelib.aws.store import AccessStore
from chalicelib.broker import Broker
from chalicelib.chat import messages
from chalicelib.chat.chatops import ACCESS_LABELS, SLACK_PAGE, ChatOps
from chalicelib.chat.directory import Directory
from chalicelib.chat.slack import SlackApi
from chalicelib.console import ConsoleLinks
from chalicelib.exceptions import Forbidden, NotFound
from chalicelib.identity.principal import Principal
from chalicelib.identity.tokens import Identity
from chalicelib.jit.breakglass import BreakGlassDesk
from chalicelib.jit.extensions import Extensions
from chalicelib.jit.model import AccessRequest, SlackCopy
from chalicelib.jit.requests import AccessRequests
from chalicelib.jit.revocations import Revocations

NOW = datetime(2026, 1, 1, 10, 0, tzinfo=timezone.utc)
RID = "0123456789ab"
BOB = Identity(subject="bob@example.com", principal=Principal("default", "bob@example.com"),
               groups=frozenset({"developers"}), issuer="slack")
CONTEXT = CallContext(request_id="req-1", channel="slack", user_agent="slack")
ACCOUNT = Account("production", "333333333333", "us-east-1")


def role(name: str = "prod-admin", *, mfa: bool = False, channels: tuple[str, ...] = (),
         description: str = "") -> Role:
    return Role(name=name, account=ACCOUNT, role_arn=f"arn:aws:iam::333333333333:role/{name}",
                max_duration_seconds=3600, console=True, require_mfa=mfa, allow=(), description=description,
                notify=Notify(channels=channels) if channels else None)


def request(**changes: Any) -> AccessRequest:
    base: dict[str, Any] = {"id": RID, "role": "prod-admin", "requester": "bob@example.com",
                            "duration_seconds": 3600, "reason": "deploy the hotfix", "status": "pending",
                            "created_at": NOW, "pending_until": NOW + timedelta(hours=1)}
    return AccessRequest(**{**base, **changes})


class Harness:
    def __init__(self, policy: AccessPolicy | None = None, *, slack: bool = True, optional: bool = True) -> None:
        self.policy = policy or AccessPolicy(accounts={"production": ACCOUNT}, roles={"prod-admin": role()},
                                             slack_channel="C0APPROVALS", security_channel="C0SECURITY")
        self.broker = Mock(spec=Broker)
        self.access = Mock(spec=AccessRequests)
        self.console = Mock(spec=ConsoleLinks)
        self.directory = Mock(spec=Directory)
        self.directory.slack_identity.return_value = BOB
        self.store = Mock(spec=AccessStore)
        self.slack = Mock(spec=SlackApi)
        self.glass = Mock(spec=BreakGlassDesk)
        self.extensions = Mock(spec=Extensions)
        self.revocations = Mock(spec=Revocations)
        self.ops = ChatOps(policy=lambda: self.policy, broker=self.broker, access=self.access, console=self.console,
                           directory=self.directory, store=self.store, slack=self.slack if slack else None,
                           clock=lambda: NOW, glass=self.glass if optional else None,
                           extensions=self.extensions if optional else None,
                           revocations=self.revocations if optional else None)

    def command(self, text: str) -> dict[str, Any]:
        return self.ops.command({"text": text, "user_id": "U0BOB", "response_url": "https://hooks.slack.com/x"},
                                "req-1")


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_acknowledge_answers_help_at_once_and_hands_the_rest_to_the_worker() -> None:
    assert ChatOps.acknowledge({"text": "help"}) == (messages.help_reply(), False)
    assert ChatOps.acknowledge({}) == (messages.help_reply(), False)
    assert ChatOps.acknowledge({"text": "Roles"}) == (messages.working_on("roles"), True)


def test_the_caller_is_the_slack_user_of_the_form(h: Harness) -> None:
    h.broker.roles.return_value = []
    assert h.command("roles") == messages.roles_reply("bob@example.com", [], ACCESS_LABELS)
    h.directory.slack_identity.assert_called_once_with("U0BOB", h.policy, h.slack)
    h.broker.roles.assert_called_once_with(BOB)


def test_unknown_commands_get_the_help_and_refusals_a_warning(h: Harness) -> None:
    assert h.command("frobnicate") == messages.help_reply()
    assert h.ops.command({"user_id": "U0BOB"}, "req-1") == messages.help_reply()
    h.directory.slack_identity.side_effect = Forbidden("not linked")
    assert h.command("roles") == messages.warning("not linked")


def test_console(h: Harness) -> None:
    h.console.link.return_value = {"url": "https://signin.example/x", "role": "readonly", "expires_at": "t"}
    assert h.command("console readonly") == messages.console_reply(h.console.link.return_value)
    h.console.link.assert_called_once_with(BOB, "readonly", context=CONTEXT, service=None)
    h.command("console readonly s3")
    h.console.link.assert_called_with(BOB, "readonly", context=CONTEXT, service="s3")


@pytest.mark.parametrize(("text", "shown"), [
    ("console", "usage: /aws console ROLE [SERVICE]"),
    ("console a b c", "usage: /aws console ROLE [SERVICE]"),
    ("console readonly S3!", "'service' must be a console service name"),
    ("console read/only", "'role' must be 1-64 characters"),
])
def test_console_refusals_name_what_is_wrong(h: Harness, text: str, shown: str) -> None:
    assert h.command(text)["text"].startswith(f":warning: {shown}")
    h.console.link.assert_not_called()


def test_request_with_options(h: Harness) -> None:
    h.access.create.return_value = request()
    reply = h.command("request prod-admin,db-admin 2h ticket=INC-42 scope=ro start=2026-01-02T09:00:00Z db down now")
    assert reply == messages.request_filed(request().to_dict(NOW))
    h.access.create.assert_called_once_with(
        BOB, ["prod-admin", "db-admin"], duration_seconds=7200, reason="db down now", context=CONTEXT,
        requester_slack="U0BOB", ticket="INC-42", scope="ro", start_at=datetime(2026, 1, 2, 9, tzinfo=timezone.utc))


def test_request_options_are_read_only_before_the_reason(h: Harness) -> None:
    h.access.create.return_value = request()
    h.command("request prod-admin 30m fix it ticket=INC-42 a=b")
    h.access.create.assert_called_once_with(BOB, ["prod-admin"], duration_seconds=1800,
                                            reason="fix it ticket=INC-42 a=b", context=CONTEXT,
                                            requester_slack="U0BOB", ticket=None, scope=None, start_at=None)
    h.command("request prod-admin 30m a=b ticket=INC-42")
    assert h.access.create.call_args.kwargs["reason"] == "a=b ticket=INC-42"
    assert h.access.create.call_args.kwargs["ticket"] is None


def test_request_with_a_one_word_reason_and_a_ticket_holding_equals_signs(h: Harness) -> None:
    h.access.create.return_value = request()
    h.command("request prod-admin 1h outage")
    assert h.access.create.call_args.kwargs["reason"] == "outage"
    h.command("request prod-admin 1h ticket=CHG=7=x scope=ro outage")
    assert (h.access.create.call_args.kwargs["ticket"], h.access.create.call_args.kwargs["scope"]) == ("CHG=7=x", "ro")
    assert h.access.create.call_args.kwargs["reason"] == "outage"


@pytest.mark.parametrize("text", ["request prod-admin 2h", "request prod-admin", "request"])
def test_request_without_a_reason_shows_its_usage(h: Harness, text: str) -> None:
    assert h.command(text)["text"].startswith(":warning: usage: /aws request ROLE[,ROLE...] DURATION")
    h.access.create.assert_not_called()


def test_requests_pages(h: Harness) -> None:
    h.access.page.return_value = ([request()], "tok")
    assert h.command("requests") == messages.requests_reply([request().to_dict(NOW)], "tok")
    h.access.page.assert_called_once_with(BOB, limit=SLACK_PAGE, next_token=None, kind=None)
    h.command("requests more tok")
    h.access.page.assert_called_with(BOB, limit=SLACK_PAGE, next_token="tok", kind=None)
    h.command("requests break-glass")
    h.access.page.assert_called_with(BOB, limit=SLACK_PAGE, next_token=None, kind="break_glass")
    h.command("requests break-glass more tok2")
    h.access.page.assert_called_with(BOB, limit=SLACK_PAGE, next_token="tok2", kind="break_glass")
    assert SLACK_PAGE == 10


@pytest.mark.parametrize("text", ["requests more", "requests tok", "requests more a b", "requests break-glass x"])
def test_requests_refuses_anything_but_more_token(h: Harness, text: str) -> None:
    assert h.command(text)["text"].startswith(":warning: usage: /aws requests [break-glass]")
    h.access.page.assert_not_called()


def test_approve_all_or_named_roles(h: Harness) -> None:
    h.access.approve.return_value = request(status="approved", grant_until=NOW + timedelta(hours=1))
    assert h.command(f"approve {RID}") == messages.approved_reply(h.access.approve.return_value.to_dict(NOW))
    h.access.approve.assert_called_once_with(BOB, RID, context=CONTEXT, roles=None)
    h.command(f"approve {RID} prod-admin db-admin")
    h.access.approve.assert_called_with(BOB, RID, context=CONTEXT, roles=["prod-admin", "db-admin"])
    h.command(f"approve {RID} db-admin")  # one role named approves only that one
    h.access.approve.assert_called_with(BOB, RID, context=CONTEXT, roles=["db-admin"])


def test_decisions_need_a_well_formed_id(h: Harness) -> None:
    for verb in ("approve", "deny", "cancel", "revoke", "review"):
        assert h.command(f"{verb} 0123") == messages.warning(str(NotFound("no access request '0123'"))), verb
        assert h.command(verb)["text"].startswith(f":warning: usage: /aws {verb} ID"), verb
    assert not (h.access.method_calls or h.glass.method_calls)


def test_deny_with_and_without_a_note(h: Harness) -> None:
    h.access.deny.return_value = request(status="denied")
    assert h.command(f"deny {RID} not today, sorry") == messages.denied_reply(request(status="denied").to_dict(NOW))
    h.access.deny.assert_called_once_with(BOB, RID, note="not today, sorry", context=CONTEXT)
    h.command(f"deny {RID}")
    h.access.deny.assert_called_with(BOB, RID, note=None, context=CONTEXT)


def test_cancel(h: Harness) -> None:
    h.access.cancel.return_value = request(status="cancelled")
    assert h.command(f"cancel {RID}") == messages.cancelled_reply(request(status="cancelled").to_dict(NOW))
    h.access.cancel.assert_called_once_with(BOB, RID, context=CONTEXT)
    assert h.command(f"cancel {RID} {RID}")["text"] == ":warning: usage: /aws cancel ID"
    assert h.access.cancel.call_count == 1


def test_revoke_ends_the_grant_then_its_sessions(h: Harness) -> None:
    revoked = request(status="revoked")
    h.access.revoke.return_value = revoked
    h.revocations.grant_sessions_ended.return_value = {"status": "written", "cutoff": "c", "accounts": {}}
    assert h.command(f"revoke {RID} left the team") == messages.grant_revoked_reply(
        revoked.to_dict(NOW), {"status": "written", "cutoff": "c", "accounts": {}})
    h.access.revoke.assert_called_once_with(BOB, RID, note="left the team", context=CONTEXT)
    h.revocations.grant_sessions_ended.assert_called_once_with(BOB, revoked, "left the team",
                                                               context=CONTEXT)
    h.command(f"revoke {RID}")
    h.access.revoke.assert_called_with(BOB, RID, note=None, context=CONTEXT)


def test_revoke_without_revocations_says_the_sessions_live_on() -> None:
    h = Harness(optional=False)
    h.access.revoke.return_value = request(status="revoked")
    assert h.command(f"revoke {RID}") == messages.grant_revoked_reply(
        request(status="revoked").to_dict(NOW),
        {"status": "failed", "detail": "revocations are not configured on this broker"})


def test_break_glass(h: Harness) -> None:
    opened = request(kind="break_glass", status="approved", ticket="INC-42")
    h.glass.open.return_value = opened
    assert h.command("break-glass prod-admin INC-42 payments down") == messages.break_glass_reply(opened.to_dict(NOW))
    h.glass.open.assert_called_once_with(BOB, "prod-admin", reason="payments down", ticket="INC-42",
                                         context=CONTEXT, requester_slack="U0BOB")


def test_review_with_and_without_a_note(h: Harness) -> None:
    reviewed = request(kind="break_glass", status="approved")
    h.glass.review.return_value = reviewed
    assert h.command(f"review {RID} looked fine") == messages.reviewed_reply(reviewed.to_dict(NOW))
    h.glass.review.assert_called_once_with(BOB, RID, note="looked fine", context=CONTEXT)
    h.command(f"review {RID}")
    h.glass.review.assert_called_with(BOB, RID, note=None, context=CONTEXT)


def test_extend(h: Harness) -> None:
    extended = request(status="approved", grant_until=NOW + timedelta(hours=2))
    h.extensions.extend.return_value = (extended, True)
    assert h.command(f"extend {RID} 1h still fixing it") == messages.extended_reply(extended.to_dict(NOW), True)
    h.extensions.extend.assert_called_once_with(BOB, RID, seconds=3600, reason="still fixing it",
                                                context=CONTEXT, requester_slack="U0BOB")
    h.extensions.extend.return_value = (extended, False)
    assert h.command(f"extend {RID} 1h more")["text"].startswith("Extension request")


@pytest.mark.parametrize(("text", "usage"), [
    ("break-glass prod-admin INC-42", "usage: /aws break-glass ROLE TICKET REASON"),
    ("extend 0123456789ab 1h", "usage: /aws extend ID DURATION REASON"),
    ("revoke-sessions bob@example.com", "usage: /aws revoke-sessions IDENTITY REASON"),
])
def test_commands_short_of_words_show_their_usage(h: Harness, text: str, usage: str) -> None:
    assert h.command(text)["text"].startswith(f":warning: {usage}")


@pytest.mark.parametrize(("text", "shown"), [
    ("break-glass prod-admin INC-42 payments down", "usage: /aws break-glass ROLE TICKET REASON"),
    (f"review {RID}", "usage: /aws review ID [NOTE]"),
    (f"extend {RID} 1h more", "usage: /aws extend ID DURATION REASON"),
    ("revoke-sessions bob@example.com laptop stolen", "revocations are not configured on this broker"),
])
def test_commands_of_parts_this_broker_does_not_run_say_so(text: str, shown: str) -> None:
    assert Harness(optional=False).command(text)["text"].startswith(f":warning: {shown}")


def test_revoke_sessions(h: Harness) -> None:
    done = Mock()
    done.to_dict.return_value = {"id": "rev-1", "identity": "mallory@example.com", "status": "written",
                                 "cutoff": "c", "accounts": {}}
    h.revocations.revoke.return_value = done
    assert h.command("revoke-sessions mallory@example.com laptop stolen") == messages.revocation_reply(
        done.to_dict.return_value)
    h.revocations.revoke.assert_called_once_with(BOB, "mallory@example.com", "laptop stolen",
                                                 context=CONTEXT)


# -- the worker's tasks


def test_a_command_task_answers_through_its_response_url(h: Harness) -> None:
    h.broker.roles.return_value = []
    form = {"text": "roles", "user_id": "U0BOB", "response_url": "https://hooks.slack.com/commands/1"}
    h.ops.run({"kind": "command", "form": form, "request_id": "req-1"})
    h.slack.respond.assert_called_once_with(
        "https://hooks.slack.com/commands/1", messages.roles_reply("bob@example.com", [], ACCESS_LABELS))


def test_without_a_response_url_or_slack_nothing_is_sent(h: Harness) -> None:
    h.broker.roles.return_value = []
    h.ops.run({"kind": "command", "form": {"text": "roles", "user_id": "U0BOB"}})
    h.slack.respond.assert_not_called()
    quiet = Harness(slack=False)
    quiet.broker.roles.return_value = []
    quiet.ops.run({"kind": "command", "form": {"text": "roles", "user_id": "U0BOB", "response_url": "https://x"}})
    quiet.broker.roles.assert_called_once()


def test_a_task_that_fails_or_is_unknown_is_logged_not_raised(h: Harness, caplog: pytest.LogCaptureFixture) -> None:
    h.store.get.side_effect = RuntimeError("boom")
    h.ops.run({"kind": "request_created", "request_id": RID})
    h.ops.run({"kind": "mystery"})
    assert [r.getMessage() for r in caplog.records] == ["task request_created failed", "unknown task kind 'mystery'"]


def click(action: str, value: str = RID, **changes: Any) -> dict[str, Any]:
    return {"type": "block_actions", "user": {"id": "U0CAROL"}, "response_url": "https://hooks.slack.com/a/1",
            "actions": [{"action_id": action, "value": value}], **changes}


def test_buttons_decide_as_the_slack_user_who_clicked(h: Harness) -> None:
    h.ops.interaction(click("approve"), "req-1")
    h.directory.slack_identity.assert_called_once_with("U0CAROL", h.policy, h.slack)
    h.access.approve.assert_called_once_with(BOB, RID, context=CONTEXT)
    h.ops.run({"kind": "interaction", "payload": click("deny"), "request_id": "req-1"})
    h.access.deny.assert_called_once_with(BOB, RID, note=None, context=CONTEXT)
    h.ops.interaction(click("review"), "req-1")
    h.glass.review.assert_called_once_with(BOB, RID, note=None, context=CONTEXT)
    h.slack.respond.assert_not_called()


def test_a_command_without_a_user_is_nobodys(h: Harness) -> None:
    h.directory.slack_identity.side_effect = Forbidden("not linked")
    assert h.ops.command({"text": "roles"}, "req-1") == messages.warning("not linked")
    h.directory.slack_identity.assert_called_once_with("", h.policy, h.slack)
    h.directory.slack_identity.side_effect = None  # were such a form let through, it would name no Slack user
    h.access.create.return_value = request()
    h.ops.command({"text": "request prod-admin 1h outage"}, "req-1")
    assert h.access.create.call_args.kwargs["requester_slack"] == ""


def test_a_click_without_a_value_names_no_request(h: Harness) -> None:
    h.ops.interaction({**click("approve"), "actions": [{"action_id": "approve"}]}, "req-1")
    h.slack.respond.assert_called_once_with("https://hooks.slack.com/a/1", {
        **messages.warning(str(NotFound("no access request ''"))), "replace_original": False})


def test_a_refused_click_without_a_response_url_is_not_answered(h: Harness) -> None:
    h.access.approve.side_effect = Forbidden("no")
    payload = click("approve")
    del payload["response_url"]
    h.ops.interaction(payload, "req-1")
    h.slack.respond.assert_not_called()


def test_a_click_without_a_user_is_nobodys(h: Harness) -> None:
    h.directory.slack_identity.side_effect = Forbidden("not linked")
    h.ops.interaction({**click("approve"), "user": None}, "req-1")
    h.directory.slack_identity.assert_called_once_with("", h.policy, h.slack)
    h.access.approve.assert_not_called()


@pytest.mark.parametrize("payload", [
    click("approve", type="view_submission"), click("approve", actions=[]), {"type": "block_actions"},
])
def test_anything_but_a_button_click_is_ignored(h: Harness, payload: dict[str, Any]) -> None:
    h.ops.interaction(payload, "req-1")
    assert not (h.access.method_calls or h.directory.method_calls or h.slack.method_calls)


def test_a_refused_click_is_answered_without_replacing_the_message(h: Harness) -> None:
    h.access.approve.side_effect = Forbidden("you cannot approve your own request")
    h.ops.interaction(click("approve"), "req-1")
    h.slack.respond.assert_called_once_with(
        "https://hooks.slack.com/a/1", {**messages.warning("you cannot approve your own request"),
                                        "replace_original": False})
    h.access.approve.side_effect = None
    h.ops.interaction(click("approve", value="../x"), "req-1")
    assert h.slack.respond.call_args.args[1]["text"].startswith(":warning: no access request")
    assert h.access.approve.call_count == 1


def test_an_unknown_button_does_nothing(h: Harness) -> None:
    h.ops.interaction(click("explode"), "req-1")
    assert not (h.access.method_calls or h.glass.method_calls)


# -- copies of a request in Slack


def test_a_new_request_goes_to_the_approvers_and_each_notify_channel_once() -> None:
    h = Harness(AccessPolicy(accounts={}, roles={"prod-admin": role(channels=("C0TEAM", "C0APPROVALS", "C0TEAM",
                                                                                "C0OPS"), description="Admin")},
                             slack_channel="C0APPROVALS"))
    h.store.get.return_value = request()
    h.slack.post.side_effect = lambda channel, text, blocks: (channel, f"ts-{channel}")
    h.ops.notify_created(RID)
    data = request().to_dict(NOW)
    approvers = messages.approval_request(data, description="Admin", mfa_note=False, audience="approvers")
    notify = messages.approval_request(data, description="Admin", mfa_note=False, audience="notify")
    assert h.slack.post.call_args_list == [
        (("C0APPROVALS", *approvers),), (("C0TEAM", *notify),), (("C0OPS", *notify),)]
    assert [c.args for c in h.store.add_message.call_args_list] == [
        (RID, "C0APPROVALS", "ts-C0APPROVALS", "approvers"), (RID, "C0TEAM", "ts-C0TEAM", "notify"),
        (RID, "C0OPS", "ts-C0OPS", "notify")]


def test_one_channel_down_does_not_silence_the_others() -> None:
    h = Harness(AccessPolicy(accounts={}, roles={"prod-admin": role(channels=("C0TEAM",))},
                             slack_channel="C0APPROVALS"))
    h.store.get.return_value = request()

    def post(channel: str, text: str, blocks: Any) -> tuple[str, str]:
        if channel == "C0APPROVALS":
            raise RuntimeError("channel_not_found")
        return channel, "1.0"

    h.slack.post.side_effect = post
    h.ops.notify_created(RID)
    h.store.add_message.assert_called_once_with(RID, "C0TEAM", "1.0", "notify")


def test_without_an_approvals_channel_or_slack_nothing_is_posted() -> None:
    h = Harness(AccessPolicy(accounts={}, roles={}))
    h.store.get.return_value = request()
    h.ops.notify_created(RID)
    h.slack.post.assert_not_called()
    quiet = Harness(slack=False)
    quiet.store.get.return_value = request()
    quiet.ops.notify_created(RID)
    quiet.ops.notify_decided(RID)
    quiet.ops.notify_changed(RID)
    quiet.store.add_message.assert_not_called()


def test_a_mfa_role_gets_no_buttons() -> None:
    h = Harness(AccessPolicy(accounts={}, roles={"prod-admin": role(mfa=True)}, slack_channel="C0APPROVALS"))
    h.store.get.return_value = request()
    h.slack.post.return_value = ("C0APPROVALS", "1.0")
    h.ops.notify_created(RID)
    _, text, blocks = h.slack.post.call_args.args
    assert (text, blocks) == messages.approval_request(request().to_dict(NOW), mfa_note=True)


def test_a_break_glass_is_announced_to_approvers_security_and_notify_channels() -> None:
    h = Harness(AccessPolicy(accounts={}, roles={"prod-admin": role(channels=("C0TEAM",))},
                             slack_channel="C0APPROVALS", security_channel="C0SECURITY"))
    glass = request(kind="break_glass", status="approved")
    h.store.get.return_value = glass
    h.slack.post.side_effect = lambda channel, text, blocks: (channel, "1.0")
    h.ops.notify_break_glass(RID)
    data = glass.to_dict(NOW)
    assert [c.args for c in h.slack.post.call_args_list] == [
        ("C0APPROVALS", *messages.approval_request(data, mfa_note=False, audience="approvers")),
        ("C0SECURITY", *messages.approval_request(data, mfa_note=False, audience="security")),
        ("C0TEAM", *messages.approval_request(data, mfa_note=False, audience="notify"))]
    assert [c.args[3] for c in h.store.add_message.call_args_list] == ["approvers", "security", "notify"]


def test_a_decision_updates_every_copy_for_its_audience_and_tells_the_requester(h: Harness) -> None:
    copies = (SlackCopy("C0APPROVALS", "1.0", "approvers"), SlackCopy("C0TEAM", "2.0", "notify"))
    decided = request(status="denied", decided_by="carol@example.com", decided_at=NOW, requester_slack="U0BOB",
                      messages=copies)
    h.store.get.return_value = decided
    h.slack.update.side_effect = [RuntimeError("message_not_found"), None]
    h.ops.run({"kind": "request_decided", "request_id": RID})
    data = decided.to_dict(NOW)
    assert [c.args for c in h.slack.update.call_args_list] == [
        ("C0APPROVALS", "1.0", *messages.decision_update(data, audience="approvers")),
        ("C0TEAM", "2.0", *messages.decision_update(data, audience="notify"))]
    h.slack.post.assert_called_once_with("U0BOB", messages.requester_notice(data))


def test_a_requester_unknown_to_slack_gets_no_notice(h: Harness) -> None:
    h.store.get.return_value = request(status="denied")
    h.ops.notify_decided(RID)
    h.slack.post.assert_not_called()


def test_a_change_updates_the_copies_without_a_notice(h: Harness) -> None:
    copies = (SlackCopy("C0APPROVALS", "1.0", "approvers"),)
    h.store.get.return_value = request(messages=copies, requester_slack="U0BOB")
    h.ops.run({"kind": "request_changed", "request_id": RID})
    h.slack.update.assert_called_once_with(
        "C0APPROVALS", "1.0", *messages.approval_request(request().to_dict(NOW), mfa_note=False))
    h.slack.post.assert_not_called()


def test_created_and_break_glass_tasks_reach_their_handlers(h: Harness) -> None:
    h.store.get.return_value = request()
    h.slack.post.return_value = ("C", "1.0")
    h.ops.run({"kind": "request_created", "request_id": RID})
    h.ops.run({"kind": "break_glass_opened", "request_id": RID})
    assert [c.args[0] for c in h.slack.post.call_args_list] == [
        "C0APPROVALS", "C0APPROVALS", "C0SECURITY"]


def test_updated_copies_keep_the_roles_description_and_mfa_note() -> None:
    h = Harness(AccessPolicy(accounts={}, roles={"prod-admin": role(mfa=True, description="Admin of prod")},
                             slack_channel="C0APPROVALS"))
    h.store.get.return_value = request(messages=(SlackCopy("C0APPROVALS", "1.0", "approvers"),))
    h.ops.notify_changed(RID)
    h.slack.update.assert_called_once_with("C0APPROVALS", "1.0", *messages.approval_request(
        request().to_dict(NOW), description="Admin of prod", mfa_note=True, audience="approvers"))


def test_copies_of_a_request_whose_role_left_the_policy_still_update() -> None:
    h = Harness(AccessPolicy(accounts={}, roles={}, slack_channel="C0APPROVALS"))
    h.store.get.return_value = request(messages=(SlackCopy("C0APPROVALS", "1.0", "approvers"),))
    h.ops.notify_changed(RID)
    h.slack.update.assert_called_once_with("C0APPROVALS", "1.0", *messages.approval_request(
        request().to_dict(NOW), description="", mfa_note=False, audience="approvers"))


def test_tasks_carry_their_request_id_into_the_audit_context(h: Harness) -> None:
    h.access.cancel.return_value = request(status="cancelled")
    h.ops.run({"kind": "command", "form": {"text": f"cancel {RID}", "user_id": "U0BOB"}, "request_id": "req-9"})
    h.access.cancel.assert_called_with(BOB, RID, context=CallContext(request_id="req-9", channel="slack",
                                                                     user_agent="slack"))
    h.ops.run({"kind": "command", "form": {"text": f"cancel {RID}", "user_id": "U0BOB"}})
    h.access.cancel.assert_called_with(BOB, RID, context=CallContext(request_id="slack", channel="slack",
                                                                     user_agent="slack"))
    h.ops.run({"kind": "interaction", "payload": click("approve"), "request_id": "req-9"})
    h.access.approve.assert_called_with(BOB, RID, context=CallContext(request_id="req-9", channel="slack",
                                                                       user_agent="slack"))
    h.ops.run({"kind": "interaction", "payload": click("approve")})
    h.access.approve.assert_called_with(BOB, RID, context=CallContext(request_id="slack", channel="slack",
                                                                       user_agent="slack"))
