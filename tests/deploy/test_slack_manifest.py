"""slack/manifest.yaml points Slack at routes the app really has."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_manifest_urls_are_routes_of_the_app_and_scopes_are_what_it_needs() -> None:
    import app as app_module

    manifest = yaml.safe_load((ROOT / "slack" / "manifest.yaml").read_text())
    [command] = manifest["features"]["slash_commands"]
    interactivity = manifest["settings"]["interactivity"]
    assert command["command"] == "/aws"
    for url in (command["url"], interactivity["request_url"]):
        assert url.startswith("BROKER_URL/")
        path = url.removeprefix("BROKER_URL")
        assert "POST" in app_module.app.routes[path], path
    assert interactivity["is_enabled"] is True
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == {
        "commands", "chat:write", "users:read", "users:read.email", "im:write"}
