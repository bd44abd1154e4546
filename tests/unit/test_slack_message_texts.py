"""What people read in Slack, word for word, for ordinary requests.

test_slack_messages.py shows that hostile values are cleaned; these pin the
messages themselves (what Slack shows is the product): the wording, which
facts appear in which case, the blocks and their buttons.
"""

from __future__ import annotations

from typing import Any

from chalicelib.chat import messages

REQUEST: dict[str, Any] = {"id": "0123456789ab", "kind": "access", "role": "prod-admin",
                           "requester": "bob@example.com", "duration_seconds": 7200, "reason": "deploy the hotfix",
                           "status": "pending"}
APPROVED = {**REQUEST, "status": "approved", "decided_by": "carol@example.com", "decided_at": "2026-01-01T10:00:00Z",
            "grant_until": "2026-01-01T12:00:00Z"}
PROGRESS = {"stage": 1, "stages": 2, "stage_name": "leads", "approvals": 1, "required": 2}
GLASS = {**REQUEST, "kind": "break_glass", "status": "approved", "ticket": "INC-42",
         "grant_until": "2026-01-01T11:00:00Z", "review": {"status": "pending"}}
ASKS = "*Access request* `0123456789ab`\n*bob@example.com* asks for *prod-admin* for 120 min.\n> deploy the hotfix"
GLASS_HEAD = ("`0123456789ab`\n*bob@example.com* took *prod-admin* without an approver, until 2026-01-01T11:00:00Z.\n"
              "> deploy the hotfix\nTicket: `INC-42`")
REVIEW_PENDING = ":mag: *Review pending*: an approver of the role must review this access."


def reply(text: str) -> dict[str, Any]:
    return {"response_type": "ephemeral", "text": text}


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(action: str, label: str, style: str) -> dict[str, Any]:
    return {"type": "button", "action_id": action, "style": style, "value": "0123456789ab",
            "text": {"type": "plain_text", "text": label}}


DECIDE = {"type": "actions", "block_id": "decide:0123456789ab",
          "elements": [button("approve", "Approve", "primary"), button("deny", "Deny", "danger")]}


def test_short_replies() -> None:
    assert messages.help_reply() == reply(messages.HELP)
    assert messages.working_on("roles") == reply(":hourglass_flowing_sand: working on `/aws roles` ...")
    assert messages.warning("no such role") == reply(":warning: no such role")
    assert messages.not_served() == reply(":no_entry: rolebroker does not serve this Slack workspace or account. "
                                          "Ask in your company's own workspace.")
    assert messages.ephemeral("x", []) == reply("x")
    assert messages.ephemeral("x", [section("y")]) == {**reply("x"), "blocks": [section("y")]}


def test_refusals_are_told_by_their_first_mark() -> None:
    assert messages.is_refusal(messages.warning("no"))
    assert messages.is_refusal(messages.not_served())
    assert not messages.is_refusal(messages.working_on("roles"))
    assert not messages.is_refusal(reply("fine :warning:"))
    assert not messages.is_refusal({"text": None})


def test_roles_reply() -> None:
    roles = [
        {"name": "readonly", "account": "prod", "account_id": "111122223333", "region": "eu-west-1",
         "access": "allowed"},
        {"name": "prod-admin", "account": "prod", "account_id": "111122223333", "region": "eu-west-1",
         "access": "approval_required"},
        {"name": "db-admin", "account": "data", "account_id": "444455556666", "region": "us-east-1",
         "access": "granted_until:2026-01-01T12:00:00Z"},
        {"name": "audit", "account": "data", "account_id": "444455556666", "region": "us-east-1",
         "access": "something_new"},
    ]
    labels = {"allowed": "allowed", "approval_required": "approval required"}
    assert messages.roles_reply("bob@example.com", roles, labels) == reply(
        "Roles for bob@example.com:\n"
        "• `readonly` — prod 111122223333 (eu-west-1): allowed\n"
        "• `prod-admin` — prod 111122223333 (eu-west-1): approval required\n"
        "• `db-admin` — data 444455556666 (us-east-1): granted until 2026-01-01T12:00:00Z\n"
        "• `audit` — data 444455556666 (us-east-1): something_new")
    assert messages.roles_reply("bob@example.com", [], labels) == reply(
        "No roles for bob@example.com. If you expected some, sign in once with `rolebroker login` so the broker "
        "knows your groups.")


def test_exactly_a_full_list_of_roles_is_not_cut() -> None:
    roles = [{"name": f"role-{i}", "account": "a", "account_id": "1", "region": "r", "access": "allowed"}
             for i in range(messages.LIST_LINES)]
    text = messages.roles_reply("bob", roles, {})["text"]
    assert text.count("\n• ") == messages.LIST_LINES and "more" not in text
    text = messages.roles_reply("bob", [*roles, roles[0]], {})["text"]
    assert text.count("\n• ") == messages.LIST_LINES and text.endswith(
        "\n… and 1 more: `rolebroker roles` lists them all.")


def test_console_reply() -> None:
    link = {"url": "https://signin.aws.amazon.com/federation?Action=login", "role": "readonly",
            "expires_at": "2026-01-01T00:15:00Z"}
    assert messages.console_reply(link) == reply(
        "<https://signin.aws.amazon.com/federation?Action=login|Open the AWS console as readonly> "
        "(link valid until 2026-01-01T00:15:00Z; only you can see this)")


def test_replies_about_one_request() -> None:
    assert messages.request_filed(REQUEST) == reply(
        "Request `0123456789ab` for *prod-admin* is pending; approvers have been asked.")
    assert messages.request_filed({**REQUEST, "kind": "extension"}) == reply(
        "Extension request `0123456789ab` for *prod-admin* is pending; approvers have been asked.")
    assert messages.reviewed_reply(REQUEST) == reply(
        "Reviewed break-glass `0123456789ab` (bob@example.com, prod-admin).")
    assert messages.denied_reply(REQUEST) == reply("Denied `0123456789ab` (bob@example.com, prod-admin).")
    assert messages.cancelled_reply(REQUEST) == reply("Cancelled `0123456789ab` (prod-admin).")
    assert messages.break_glass_reply(GLASS) == reply(
        ":rotating_light: Break-glass `0123456789ab`: you have *prod-admin* until 2026-01-01T11:00:00Z. Security has "
        "been told; an approver will review it. Get credentials with `rolebroker credential-process` or "
        "`aws --profile`.")


def test_roles_are_named_up_to_five_then_counted() -> None:
    five = {**REQUEST, "roles": ["a", "b", "c", "d", "e"]}
    assert messages.request_filed(five)["text"] == "Request `0123456789ab` for *a, b, c, d, e* is pending; " \
                                                   "approvers have been asked."
    six = {**REQUEST, "roles": ["a", "b", "c", "d", "e", "f"]}
    assert messages.request_filed(six)["text"] == "Request `0123456789ab` for *a, b, c, d, e (+1 more)* is " \
                                                  "pending; approvers have been asked."
    seven = {**REQUEST, "roles": ["a", "b", "c", "d", "e", "f", "g"]}
    assert messages.request_filed(seven)["text"] == "Request `0123456789ab` for *a, b, c, d, e (+2 more)* is " \
                                                    "pending; approvers have been asked."


def test_approved_and_counted_replies() -> None:
    assert messages.approved_reply(APPROVED) == reply(
        "Approved `0123456789ab`: bob@example.com has *prod-admin* until 2026-01-01T12:00:00Z.")
    assert messages.approved_reply({**APPROVED, "grant_until": None}) == reply(
        "Approved `0123456789ab`: bob@example.com has *prod-admin* until ?.")
    assert messages.approved_reply({**REQUEST, "progress": PROGRESS}) == reply(
        "Counted your approval of `0123456789ab`; 1 of 2 approvals in stage 1 of 2 (leads)")


def test_extended_replies() -> None:
    assert messages.extended_reply(APPROVED, True) == reply(
        "Extended `0123456789ab`: *prod-admin* until 2026-01-01T12:00:00Z.")
    assert messages.extended_reply(REQUEST, False) == reply(
        "Extension request `0123456789ab` is pending: that is beyond what the role extends without an approver, so "
        "approvers have been asked.")


def test_requests_reply() -> None:
    found = [REQUEST, {**REQUEST, "id": "0123456789ac", "kind": "break_glass", "status": "approved"},
             {**REQUEST, "id": "0123456789ad", "kind": "extension", "duration_seconds": 5399, "progress": PROGRESS}]
    assert messages.requests_reply(found, "tok-1") == reply(
        "• `0123456789ab` bob@example.com → *prod-admin* (120 min): pending\n"
        "• `0123456789ac` :rotating_light: break-glass bob@example.com → *prod-admin* (120 min): approved\n"
        "• `0123456789ad` extension bob@example.com → *prod-admin* (89 min): pending 1 of 2 approvals in stage 1 of 2 "
        "(leads)\n"
        "More: `/aws requests more tok-1`")
    assert messages.requests_reply(found[:1], None)["text"] == \
        "• `0123456789ab` bob@example.com → *prod-admin* (120 min): pending"
    assert messages.requests_reply([], "tok-1") == reply("No access requests for you or waiting for you.")


def test_a_long_paging_token_is_kept_whole() -> None:
    token = "_" + "t" * 398 + "_"  # base64url: may start or end with "_", which a code span keeps
    assert messages.requests_reply([REQUEST], token)["text"].endswith(f"More: `/aws requests more {token}`")
    # Longer is not ours (the broker's are about 100 characters): capped like any value.
    assert messages.requests_reply([REQUEST], token + "t")["text"].endswith(f"more {token[:399]}…`")


def test_the_approvers_message_for_a_pending_request() -> None:
    assert messages.approval_request(REQUEST, mfa_note=False) == (
        "Access request 0123456789ab: bob@example.com asks for prod-admin", [section(ASKS), DECIDE])
    assert messages.approval_request(REQUEST, mfa_note=True) == (
        "Access request 0123456789ab: bob@example.com asks for prod-admin",
        [section(ASKS), section(":lock: This role requires MFA, which Slack cannot prove: approve with "
                                "`rolebroker approve 0123456789ab` or the API.")])
    assert messages.approval_request(REQUEST, mfa_note=False, audience="notify") == (
        "Access request 0123456789ab: bob@example.com asks for prod-admin",
        [section(ASKS), section("_You are notified of this request; its approvers decide._")])
    assert messages.approval_request(REQUEST, mfa_note=True, audience="notify")[1][-1] == section(
        "_You are notified of this request; its approvers decide._")


def test_the_approvers_message_with_every_fact() -> None:
    request = {**REQUEST, "roles": ["prod-admin", "db-admin"], "ticket": "CHG-7", "scope": "ro",
               "start_at": "2026-01-02T09:00:00Z", "approvals": [{"who": "dave@example.com", "stage": "leads"}],
               "progress": PROGRESS}
    assert messages.approval_request(request, description="Full admin of prod", mfa_note=False) == (
        "Access request 0123456789ab: bob@example.com asks for prod-admin, db-admin",
        [section("*Access request* `0123456789ab`\n"
                 "*bob@example.com* asks for 2 roles, one decision for all: *prod-admin, db-admin*, for 120 min.\n"
                 "> deploy the hotfix\n"
                 "Ticket: `CHG-7` · Scope: `ro` · Starts: 2026-01-02T09:00:00Z\n"
                 "_Full admin of prod_\n"
                 "Approved so far by dave@example.com (leads)\n"
                 ":hourglass_flowing_sand: Waiting for 1 of 2 approvals in stage 1 of 2 (leads)."), DECIDE])


def test_only_the_ten_first_approvals_are_named() -> None:
    approvals = [{"who": f"p{i}@example.com", "stage": "s"} for i in range(11)]
    _, blocks = messages.approval_request({**REQUEST, "approvals": approvals}, mfa_note=False)
    line = blocks[0]["text"]["text"].splitlines()[-1]
    assert line == "Approved so far by " + ", ".join(f"p{i}@example.com (s)" for i in range(10))


def test_an_extension_request() -> None:
    request = {**REQUEST, "kind": "extension", "parent": "0123456789aa", "duration_seconds": 1800}
    assert messages.approval_request(request, mfa_note=False) == (
        "Extension request 0123456789ab: bob@example.com asks for prod-admin",
        [section("*Extension request* `0123456789ab`\n"
                 "*bob@example.com* asks to extend request `0123456789aa` (*prod-admin*) by 30 min.\n"
                 "> deploy the hotfix"), DECIDE])


def test_a_decided_request_says_who_when_and_what_changed() -> None:
    decided = {**APPROVED, "grant_from": "2026-01-02T09:00:00Z", "start_at": "2026-01-02T09:00:00Z",
               "grant_until": "2026-01-02T11:00:00Z", "narrowed_from": ["prod-admin", "db-admin"],
               "extended_seconds": 1799, "note": "ok for today"}
    line = ("*Approved* by carol@example.com at 2026-01-01T10:00:00Z; access from 2026-01-02T09:00:00Z; access until "
            "2026-01-02T11:00:00Z; narrowed to prod-admin (extended by 29 min) (ok for today)")
    assert messages.decision_update(decided) == (
        f"Access request 0123456789ab: {line}", [section(ASKS + "\nStarts: 2026-01-02T09:00:00Z"), section(line)])
    assert messages.decided_line({**decided, "start_at": None}) == line.replace(
        "; access from 2026-01-02T09:00:00Z", "")
    assert messages.decided_line({**decided, "grant_from": None}) == line.replace(
        "; access from 2026-01-02T09:00:00Z", "")


def test_a_refused_request_shows_no_access_times() -> None:
    denied = {**REQUEST, "status": "denied", "decided_by": None, "decided_at": "2026-01-01T10:00:00Z",
              "grant_until": "2026-01-01T12:00:00Z", "grant_from": "2026-01-01T10:00:00Z",
              "start_at": "2026-01-01T10:00:00Z"}
    assert messages.decision_update(denied)[1][-1] == section("*Denied* by nobody at 2026-01-01T10:00:00Z")
    assert messages.decided_line({**APPROVED, "grant_until": None}) == \
        "*Approved* by carol@example.com at 2026-01-01T10:00:00Z"


def test_the_requesters_notice() -> None:
    assert messages.requester_notice(APPROVED) == (
        "Your request `0123456789ab` for *prod-admin*: *Approved* by carol@example.com at 2026-01-01T10:00:00Z; "
        "access until 2026-01-01T12:00:00Z")
    assert messages.requester_notice(GLASS) == f"Your break-glass `0123456789ab` for *prod-admin*: {REVIEW_PENDING}"
    done = {**GLASS, "review": {"status": "done", "by": "carol@example.com", "at": "2026-01-01T10:30:00Z",
                                "note": "fine"}}
    assert messages.requester_notice(done) == ("Your break-glass `0123456789ab` for *prod-admin*: *Reviewed* by "
                                               "carol@example.com at 2026-01-01T10:30:00Z (fine)")
    done["review"]["note"] = None
    assert messages.requester_notice(done).endswith("*Reviewed* by carol@example.com at 2026-01-01T10:30:00Z")


def test_the_break_glass_alert_per_audience() -> None:
    review = {"type": "actions", "block_id": "review:0123456789ab",
              "elements": [{**button("review", "Mark reviewed", "primary")}]}
    text = "BREAK-GLASS 0123456789ab: bob@example.com took prod-admin without an approver"
    assert messages.break_glass_alert(GLASS, description="Full admin of prod") == (text, [
        section(f":rotating_light: *BREAK-GLASS* {GLASS_HEAD}\n_Full admin of prod_"), section(REVIEW_PENDING),
        review])
    assert messages.break_glass_alert(GLASS, audience="security") == (text, [
        section(f":rotating_light: *BREAK-GLASS* <!here> {GLASS_HEAD}"), section(REVIEW_PENDING)])
    assert messages.break_glass_alert(GLASS, mfa_note=True) == (text, [
        section(f":rotating_light: *BREAK-GLASS* {GLASS_HEAD}"), section(REVIEW_PENDING),
        section(":lock: This role requires MFA, which Slack cannot prove: review with "
                "`rolebroker review 0123456789ab` or the API.")])
    reviewed = {**GLASS, "review": {"status": "done", "by": "carol@example.com", "at": "t"}}
    assert messages.break_glass_alert(reviewed)[1][-1] == section("*Reviewed* by carol@example.com at t")


def test_the_approvers_message_of_a_break_glass_is_its_alert() -> None:
    assert messages.approval_request(GLASS, description="Admin", mfa_note=True, audience="security") == \
        messages.break_glass_alert(GLASS, description="Admin", mfa_note=True, audience="security")
    assert "\n_Admin_" in messages.approval_request(GLASS, description="Admin", mfa_note=False)[1][0]["text"]["text"]


def test_a_break_glass_shows_its_decision_unless_it_ran_its_course() -> None:
    revoked = {**GLASS, "status": "revoked", "decided_by": "carol@example.com", "decided_at": "t"}
    assert messages.approval_request(revoked, mfa_note=False, audience="notify")[1] == [
        section(f":rotating_light: *BREAK-GLASS* {GLASS_HEAD}"), section("*Revoked* by carol@example.com at t"),
        section(REVIEW_PENDING)]
    expired = {**GLASS, "status": "expired"}
    assert len(messages.break_glass_alert(expired, audience="notify")[1]) == 2


def test_the_revocation_reply() -> None:
    doc = {"id": "rev-1", "identity": "bob@example.com", "status": "partial", "cutoff": "2026-01-01T10:00:00Z",
           "accounts": {"222": {"status": "written"},
                        "111": {"status": "failed", "detail": "AccessDenied", "uncovered": ["role-a", "role-b"]},
                        "333": {"status": "failed", "detail": "throttled"}}}
    assert messages.revocation_reply(doc) == reply(
        ":no_entry: Revocation `rev-1` of bob@example.com: *partial* in 1 of 3 account(s). Sessions issued before "
        "2026-01-01T10:00:00Z are denied; no new credentials until an admin lifts it "
        "(`rolebroker revocations --lift ID`).\n"
        "Not done (fix, then run the same command again):\n"
        "• `111` failed: AccessDenied Not reached: role-a; role-b\n"
        "• `333` failed: throttled")
    assert messages.revocation_reply({**doc, "status": "written", "accounts": None}) == reply(
        ":no_entry: Revocation `rev-1` of bob@example.com: *written* in 0 of 0 account(s). Sessions issued before "
        "2026-01-01T10:00:00Z are denied; no new credentials until an admin lifts it "
        "(`rolebroker revocations --lift ID`).")


def test_a_revocation_lists_at_most_a_screenful_of_failed_accounts() -> None:
    accounts = {f"{i:012d}": {"status": "failed", "detail": "d"} for i in range(messages.LIST_LINES + 1)}
    text = messages.revocation_reply({"id": "r", "identity": "i", "status": "failed", "cutoff": "c",
                                      "accounts": accounts})["text"]
    assert text.count("\n• ") == messages.LIST_LINES


def test_the_grant_revoked_reply() -> None:
    head = "Revoked `0123456789ab` (bob@example.com, prod-admin)."
    assert messages.grant_revoked_reply(APPROVED, None) == reply(
        f"{head} Its roles have left the access policy: there is no account to end its sessions in.")
    assert messages.grant_revoked_reply(APPROVED, {"status": "failed", "detail": "not configured"}) == reply(
        f"{head} :warning: Its sessions were not denied and may live until they expire: not configured")
    partial = {"status": "partial", "cutoff": "2026-01-01T10:00:00Z",
               "accounts": {"111": {"status": "written"}, "222": {"status": "failed", "detail": "AccessDenied"}}}
    assert messages.grant_revoked_reply(APPROVED, partial) == reply(
        f"{head} Its sessions issued before 2026-01-01T10:00:00Z are denied: *partial* in 1 of 2 account(s).\n"
        "Not done (fix, then `rolebroker revocations` shows the record):\n"
        "• `222` failed: AccessDenied")
    written = {"status": "written", "cutoff": "2026-01-01T10:00:00Z", "accounts": {"111": {"status": "written"}}}
    assert messages.grant_revoked_reply(APPROVED, written) == reply(
        f"{head} Its sessions issued before 2026-01-01T10:00:00Z are denied: *written* in 1 of 1 account(s).")
    many = {**partial, "accounts": {f"{i:012d}": {"status": "failed", "detail": "d"}
                                    for i in range(messages.LIST_LINES + 1)}}
    assert messages.grant_revoked_reply(APPROVED, many)["text"].count("\n• ") == messages.LIST_LINES


def test_a_decision_update_of_a_break_glass_keeps_the_approvers_review_button() -> None:
    _, blocks = messages.decision_update(GLASS)
    assert blocks[0] == section(f":rotating_light: *BREAK-GLASS* {GLASS_HEAD}")
    assert blocks[-1]["type"] == "actions" and blocks[-1]["block_id"] == "review:0123456789ab"
    assert messages.decision_update(GLASS, audience="notify")[1][-1] == section(REVIEW_PENDING)


def test_a_decision_update_keeps_the_roles_description() -> None:
    _, blocks = messages.decision_update(APPROVED, description="Full admin of prod")
    assert blocks[0] == section(ASKS + "\n_Full admin of prod_")


# An id as the store makes it is hex, but the builders promise more: what sits in a code span reads
# exactly as given (Slack formats nothing there), so a person can copy it.
ODD = "*ab_cd~"  # markers at word edges: outside a code span they would be look-alikes
ODD_REQUEST = {**APPROVED, "id": ODD, "parent": ODD, "progress": PROGRESS, "kind": "extension"}
ODD_GLASS = {**GLASS, "id": ODD}


def test_ids_in_code_spans_read_exactly_as_given() -> None:
    shown = [
        messages.request_filed(ODD_REQUEST)["text"],
        messages.request_filed({**ODD_REQUEST, "kind": "access"})["text"],
        messages.break_glass_reply(ODD_GLASS)["text"],
        messages.reviewed_reply(ODD_GLASS)["text"],
        messages.extended_reply(ODD_REQUEST, True)["text"],
        messages.extended_reply(ODD_REQUEST, False)["text"],
        messages.requests_reply([ODD_REQUEST], None)["text"],
        messages.approved_reply(ODD_REQUEST)["text"],
        messages.approved_reply({**ODD_REQUEST, "status": "pending"})["text"],
        messages.denied_reply(ODD_REQUEST)["text"],
        messages.cancelled_reply(ODD_REQUEST)["text"],
        messages.requester_notice(ODD_REQUEST),
        messages.requester_notice(ODD_GLASS),
        messages.grant_revoked_reply(ODD_REQUEST, None)["text"],
        messages.revocation_reply({"id": ODD, "accounts": {}})["text"],
        messages.approval_request({**ODD_REQUEST, "status": "pending"}, mfa_note=True)[1][0]["text"]["text"],
        messages.approval_request({**ODD_REQUEST, "status": "pending"}, mfa_note=True)[1][1]["text"]["text"],
        messages.break_glass_alert(ODD_GLASS)[1][0]["text"]["text"],
        messages.break_glass_alert(ODD_GLASS, mfa_note=True)[1][-1]["text"]["text"],
    ]
    for text in shown:
        assert f"`{ODD}`" in text or f" {ODD}`" in text, text


def test_the_parent_of_an_extension_reads_exactly_as_given() -> None:
    _, blocks = messages.approval_request({**REQUEST, "kind": "extension", "parent": ODD}, mfa_note=False)
    assert f"asks to extend request `{ODD}` (*prod-admin*)" in blocks[0]["text"]["text"]


def test_role_names_to_type_read_exactly_as_given() -> None:
    role = {"name": "_legacy_", "account": "prod", "account_id": "1", "region": "r", "access": "allowed"}
    assert "• `_legacy_` — prod" in messages.roles_reply("bob", [role], {})["text"]


def test_the_command_being_worked_on_reads_as_typed() -> None:
    assert messages.working_on("_x_") == reply(":hourglass_flowing_sand: working on `/aws _x_` ...")


def test_texts_people_wrote_are_shown_up_to_500_characters() -> None:
    text = "word " * 99 + "last"  # 499 characters: past a name's cap of 120
    assert len(text) == 499
    glass = {**GLASS, "reason": text, "review": {"status": "done", "by": "carol", "at": "t", "note": text}}
    _, blocks = messages.break_glass_alert(glass, description=text)
    assert blocks[0]["text"]["text"].endswith(f"> {text}\nTicket: `INC-42`\n_{text}_")
    assert blocks[-1] == section(f"*Reviewed* by carol at t ({text})")
    assert messages.warning(text) == reply(f":warning: {text}")
    assert messages.grant_revoked_reply(APPROVED, {"detail": text})["text"].endswith(f"expire: {text}")
    failed = {"status": "failed", "detail": text, "uncovered": [text]}
    assert messages.revocation_reply({"id": "r", "accounts": {"1": failed}})["text"].endswith(
        f"• `1` failed: {text} Not reached: {text}")
    decided = {**APPROVED, "reason": text, "note": text}
    _, blocks = messages.decision_update(decided, description=text)
    assert blocks == [section(f"{ASKS.replace('deploy the hotfix', text)}\n_{text}_"),
                      section(f"*Approved* by carol@example.com at 2026-01-01T10:00:00Z; access until "
                              f"2026-01-01T12:00:00Z ({text})")]


def test_a_cut_at_a_space_leaves_no_space_before_the_ellipsis() -> None:
    assert messages.inline("ab cd", 4) == "ab…"
