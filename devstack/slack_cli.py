"""``python -m devstack slack``: act as Slack against the local broker.

It builds the same form payloads Slack sends, signs them with the local
stack's signing secret (v0 HMAC, via slack_sdk), posts them to the broker,
prints the immediate answer, then prints what the broker sent back through
the fake Slack (response_url replies and Web API calls).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

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


def run(text: str | None, user: str, click: str | None, request_id: str | None, ports: dict[str, int],
        wait: float = 8.0) -> int:
    broker = f"http://{LOOPBACK}:{ports['broker']}"
    fakes = f"http://{LOOPBACK}:{ports['slack']}"
    hook = f"{fakes}/hooks/{uuid.uuid4().hex}"
    before = len(recorded(fakes))
    if click:
        payload = {"type": "block_actions", "team": {"id": DEV_SLACK_TEAM_ID},
                   "user": {"id": user, "team_id": DEV_SLACK_TEAM_ID}, "response_url": hook,
                   "actions": [{"action_id": click, "value": request_id or "", "type": "button"}]}
        status, answer = signed_post(broker, "/slack/interactions", {"payload": json.dumps(payload)})
    else:
        command, _, rest = (text or "/aws help").partition(" ")
        form = {"command": command, "text": rest, "user_id": user, "user_name": user.lower(),
                "team_id": DEV_SLACK_TEAM_ID, "channel_id": "C0LOCAL", "response_url": hook,
                "trigger_id": uuid.uuid4().hex}
        status, answer = signed_post(broker, "/slack/commands", form)
    print(f"HTTP {status} {answer}")
    if status != 200:
        return 1
    deadline = time.monotonic() + wait
    seen = before
    while time.monotonic() < deadline:
        items = recorded(fakes)
        for item in items[seen:]:
            print(f"-> {item['path']}: {json.dumps(item['body'], indent=None)[:2000]}")
        seen = len(items)
        if any(item["path"] == hook.removeprefix(fakes) for item in items[before:]):
            time.sleep(0.5)  # let follow-up Web API calls (message updates) arrive
            for item in recorded(fakes)[seen:]:
                print(f"-> {item['path']}: {json.dumps(item['body'])[:2000]}")
            return 0
        time.sleep(0.2)
    return 0
