"""``python -m devstack slack``: act as Slack against the local broker.

It builds the same form payloads Slack sends, signs them with the local
stack's signing secret (v0 HMAC, via slack_sdk), posts them to the broker,
prints the immediate answer, then prints what the broker sent back through
the fake Slack (response_url replies and Web API calls) as readable JSON.

It stops as soon as the answer is complete: a command when its reply
arrives at the response URL; a button click when the approvers' message is
updated (or a refusal arrives). It exits 1 when the broker refuses (an HTTP
error, or a reply that is a warning) or nothing arrives within ``wait``
seconds, so scripts can rely on its status.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

from chalicelib.chat import messages
from chalicelib.chat.messages import is_refusal
from chalicelib.chat.slack import parse_command

from .stack import DEV_SLACK_SIGNING_SECRET, DEV_SLACK_TEAM_ID, LOOPBACK


def signed_post(broker_url: str, path: str, form: dict[str, str]) -> tuple[int, str]:
    body = urlencode(form)
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(DEV_SLACK_SIGNING_SECRET).generate_signature(timestamp=timestamp, body=body)
    request = urllib.request.Request(  # noqa: S310 - loopback only
        broker_url + path, data=body.encode(), method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": timestamp,
                 "X-Slack-Signature": signature or ""})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback only
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def recorded(fakes_url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{fakes_url}/_recorded", timeout=5) as response:  # noqa: S310 - loopback only
        items: list[dict[str, Any]] = json.load(response)
        return items


def readable(text: str) -> str:
    """JSON as people read it: indented, with é and — as themselves rather than ``\\u`` escapes."""
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except ValueError:
        return text


@dataclass
class Outcome:
    """What came back for one command or click, and whether it is complete."""

    hook_path: str
    request_id: str | None = None  # for a click: the request whose message the decision updates
    replies: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    refused: bool = False

    def take(self, item: dict[str, Any]) -> None:
        body = item.get("body")
        body = body if isinstance(body, dict) else {}
        if item.get("path") == self.hook_path:
            self.replies.append(body)
            self.refused = self.refused or is_refusal(body)
            self.done = True
        elif self.request_id and item.get("path") == "/api/chat.update" \
                and str(body.get("text", "")).startswith(f"Access request {self.request_id}:"):
            self.done = True


def run(text: str | None, user: str, click: str | None, request_id: str | None, ports: dict[str, int],
        wait: float = 8.0, *, out: Callable[[str], None] = print, clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep) -> int:
    broker = f"http://{LOOPBACK}:{ports['broker']}"
    fakes = f"http://{LOOPBACK}:{ports['slack']}"
    hook = f"/hooks/{uuid.uuid4().hex}"
    before = len(recorded(fakes))
    working = None
    if click:
        payload = {"type": "block_actions", "team": {"id": DEV_SLACK_TEAM_ID},
                   "user": {"id": user, "team_id": DEV_SLACK_TEAM_ID}, "response_url": fakes + hook,
                   "actions": [{"action_id": click, "value": request_id or "", "type": "button"}]}
        status, answer = signed_post(broker, "/slack/interactions", {"payload": json.dumps(payload)})
    else:
        command, _, rest = (text or "/aws help").partition(" ")
        form = {"command": command, "text": rest, "user_id": user, "user_name": user.lower(),
                "team_id": DEV_SLACK_TEAM_ID, "channel_id": "C0LOCAL", "response_url": fakes + hook,
                "trigger_id": uuid.uuid4().hex}
        status, answer = signed_post(broker, "/slack/commands", form)
        working = messages.working_on(parse_command(rest).name)  # the acknowledgement of background work
    out(f"HTTP {status}" + (f"\n{readable(answer)}" if answer.strip() else ""))
    if status != 200:
        return 1
    try:
        immediate = json.loads(answer) if answer.strip() else {}
    except ValueError:
        immediate = {}
    immediate = immediate if isinstance(immediate, dict) else {}
    if working is not None and immediate != working:
        return 1 if is_refusal(immediate) else 0  # answered at once (help, or refused): nothing follows
    outcome = Outcome(hook, request_id if click else None)
    return _follow(outcome, fakes, before, wait, out, clock, sleep)


def _follow(outcome: Outcome, fakes: str, seen: int, wait: float, out: Callable[[str], None],
            clock: Callable[[], float], sleep: Callable[[float], None]) -> int:
    """Print what the broker sends through the fake Slack until the answer is complete."""
    deadline = clock() + wait
    settle: float | None = None
    while True:
        items = recorded(fakes)
        for item in items[seen:]:
            out(f"-> {item['path']}:\n{readable(json.dumps(item['body']))}")
            outcome.take(item)
        seen = len(items)
        now = clock()
        if outcome.done and settle is None:
            settle = now + 0.5  # a decision's follow-ups (the requester's DM) come right after
        if settle is not None and now >= settle:
            return 1 if outcome.refused else 0
        if settle is None and now >= deadline:
            out(f"no answer from the broker within {wait:g} s; see .devstack/broker.log")
            return 1
        sleep(0.1)
