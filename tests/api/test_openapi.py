"""docs/openapi.yaml describes exactly the routes the app has."""

from __future__ import annotations

from pathlib import Path

import yaml

import app as app_module

SPEC = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())


def _app_routes() -> set[tuple[str, str]]:
    return {(path, method.lower()) for path, methods in app_module.app.routes.items() for method in methods}


def _spec_routes() -> set[tuple[str, str]]:
    return {(path, method) for path, item in SPEC["paths"].items() for method in item
            if method in {"get", "post", "put", "patch", "delete"}}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    assert _app_routes() == _spec_routes()


def test_every_authenticated_route_documents_401() -> None:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            if operation.get("security", SPEC["security"]) and not path.startswith("/slack/"):
                assert "401" in operation["responses"], (path, method)
