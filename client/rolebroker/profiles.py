"""``~/.aws/config``: verify the broker's profiles, then edit the file line by line.

Verification. Before anything is written, every profile the broker sends must
be exactly what rolebroker itself would write for the URL asked:
``credential_process = rolebroker credential-process --url <that URL> --role
<the profile's own name>`` plus ``region``/``output``. A compromised broker
therefore cannot plant a command or take over a profile of another name.

Editing. Sections are found exactly as botocore finds them (configparser's
header and continuation rules, then ``build_profile_map``), every other line
is kept byte for byte, rolebroker's own sections carry a marker line, and the
default profile is never written without ``--force``.
"""

from __future__ import annotations

import os
import stat

from rolebroker.errors import ConfigError, UnsafeProfile
from rolebroker.files import atomic_write
from rolebroker.text import one_line

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

MANAGED_MARKER = "# managed by rolebroker"
_PROFILE_KEYS = ("credential_process", "region", "output")
_OUTPUT_FORMATS = frozenset({"json", "text", "table", "yaml", "yaml-stream"})
_LOWER = "abcdefghijklmnopqrstuvwxyz"
_NAME_CHARS = frozenset(_LOWER + _LOWER.upper() + "0123456789-_.")


def valid_region(region: str) -> bool:
    return 0 < len(region) <= 32 and region[0] in _LOWER and all(ch in _LOWER + "0123456789-" for ch in region)


def _valid_profile_name(name: str) -> bool:
    return 0 < len(name) <= 128 and name[0] in _NAME_CHARS - set("-_.") and set(name) <= _NAME_CHARS


class ProfileSpec:
    """A profile from the broker after verification: exactly what will be written."""

    def __init__(self, name: str, region: str | None = None, output: str | None = None,
                 duration: int | None = None) -> None:
        self.name = name
        self.region = region
        self.output = output
        self.duration = duration


def _refuse(problem: str) -> UnsafeProfile:
    return UnsafeProfile(f"refusing to write profiles: {problem}; nothing was written")


def parse_fragment(text: str) -> list[tuple[str, dict[str, str]]]:
    """Sections of the broker's config text; anything but sections and ``key = value`` is refused."""
    sections: list[tuple[str, dict[str, str]]] = []
    current: dict[str, str] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = {}
            sections.append((" ".join(line[1:-1].split()), current))
            continue
        key, eq, value = line.partition("=")
        key = key.strip()
        if current is None or not eq or not key:
            raise _refuse(f"line {number} of the broker's config is not a profile setting: {one_line(raw, 80)!r}")
        if key in current:
            raise _refuse(f"the broker's config sets {key} twice in one section")
        current[key] = value.strip()
    return sections


def _verify_command(name: str, command: str | None, broker_url: str) -> int | None:
    """The duration in the broker's credential_process, after checking it is exactly ours."""
    import shlex

    if command is None:
        raise _refuse(f"[profile {name}] has no credential_process")
    shown = one_line(command, 80)
    try:
        argv = shlex.split(command)
    except ValueError:
        raise _refuse(f"[profile {name}] has an unparsable credential_process {shown!r}") from None
    if argv[:2] != ["rolebroker", "credential-process"] or len(argv) % 2:
        raise _refuse(f"[profile {name}] runs {shown!r}, not `rolebroker credential-process`")
    options: dict[str, str] = {}
    for option, value in zip(argv[2::2], argv[3::2]):
        if option not in ("--url", "--role", "--duration") or option in options:
            raise _refuse(f"[profile {name}] passes {one_line(option, 40)!r} to rolebroker credential-process")
        options[option] = value
    if options.get("--url", "").rstrip("/") != broker_url.rstrip("/"):
        raise _refuse(_other_name(options.get("--url", ""), broker_url.rstrip("/")))
    if options.get("--role") != name:
        raise _refuse(f"[profile {name}] asks for role {one_line(options.get('--role', '(none)'), 40)!r}")
    duration = options.get("--duration")
    if duration is None:
        return None
    if not (duration.isascii() and duration.isdigit() and len(duration) <= 6):
        raise _refuse(f"[profile {name}] has a strange --duration {one_line(duration, 20)!r}")
    return int(duration)


def _other_name(named: str, asked: str) -> str:
    """What to do when the broker's profiles name another URL than the one asked."""
    from urllib.parse import urlsplit

    from rolebroker.transport import is_loopback

    if not named:
        return "the broker's profiles name no --url"
    shown = one_line(named.rstrip("/"), 120)
    try:
        mine, theirs = urlsplit(asked), urlsplit(named.rstrip("/"))
        same_machine = (mine.scheme, mine.port, mine.path) == (theirs.scheme, theirs.port, theirs.path) and \
            is_loopback(mine.hostname or "") and is_loopback(theirs.hostname or "")
    except ValueError:
        same_machine = False
    if same_machine:
        return (f"the broker calls itself {shown}, not {asked} (the same machine by another name, but profiles "
                f"and sign-ins are bound to one URL); use its own name: export ROLEBROKER_URL={shown}, then run "
                "`rolebroker configure` again")
    # Not "use that URL": the profiles may name somewhere the broker should not send anyone.
    return (f"the broker calls itself {shown}, not {asked}: if that is another name of the same broker, "
            f"use it in ROLEBROKER_URL; if that is not this broker, its operators must set ROLEBROKER_PUBLIC_URL "
            f"to {asked}")


def verify_profiles(text: str, broker_url: str) -> list[ProfileSpec]:
    """Check every section is a profile rolebroker itself would write for ``broker_url``."""
    specs: list[ProfileSpec] = []
    for header, values in parse_fragment(text):
        kind, _, name = header.partition(" ")
        if kind != "profile" or not _valid_profile_name(name):
            raise _refuse(f"section [{one_line(header, 60)}] is not a [profile NAME] section")
        if any(spec.name == name for spec in specs):
            raise _refuse(f"[profile {name}] appears twice")
        extra = sorted(set(values) - set(_PROFILE_KEYS))
        if extra:
            raise _refuse(f"[profile {name}] sets {one_line(extra[0], 40)}, which rolebroker never writes")
        duration = _verify_command(name, values.get("credential_process"), broker_url)
        region, output = values.get("region"), values.get("output")
        if region is not None and not valid_region(region):
            raise _refuse(f"[profile {name}] has a strange region {one_line(region, 40)!r}")
        if output is not None and output not in _OUTPUT_FORMATS:
            raise _refuse(f"[profile {name}] has a strange output {one_line(output, 40)!r}")
        specs.append(ProfileSpec(name, region, output, duration))
    return specs


def client_command(which: Callable[[str], str | None], executable: str, script: str) -> list[str]:
    """How the AWS tools should start this client: the installed command, else ``python <script>``.

    ``script`` is the copy this process runs from: the single-file ``.pyz``,
    or the package directory (``python client/rolebroker`` runs it as well).
    """
    installed = which("rolebroker")
    if installed:
        return [os.path.abspath(installed)]
    return [executable, os.path.abspath(script)]


def quote_command(argv: Sequence[str], *, windows: bool) -> str:
    """One command line that botocore's ``compat_shell_split`` turns back into ``argv``."""
    if any(ch in arg for arg in argv for ch in "\r\n\0"):
        raise ConfigError("cannot write a credential_process with a line break in a path")
    if windows:
        import subprocess

        return subprocess.list2cmdline(list(argv))
    import shlex

    return " ".join(shlex.quote(arg) for arg in argv)


def render_profile(spec: ProfileSpec, command: Sequence[str], broker_url: str, *, windows: bool) -> list[str]:
    argv = [*command, "credential-process", "--url", broker_url, "--role", spec.name]
    if spec.duration:
        argv += ["--duration", str(spec.duration)]
    lines = [
        f"{MANAGED_MARKER} (url={broker_url})",
        f"[profile {spec.name}]",
        f"credential_process = {quote_command(argv, windows=windows)}",
    ]
    if spec.region:
        lines.append(f"region = {spec.region}")
    if spec.output:
        lines.append(f"output = {spec.output}")
    return lines


def section_headers(lines: Sequence[str]) -> list[tuple[int, str]]:
    """(line index, header) of every section, found exactly as configparser finds them for botocore.

    That is: a stripped line ``[...]`` (the header runs to the last ``]``),
    unless it is indented deeper than an option above it, which makes it a
    continuation of that option's value; comment lines change nothing.
    """
    import configparser

    found: list[tuple[int, str]] = []
    in_section = option_open = False
    indent_level = 0
    for index, line in enumerate(lines):
        value = line.strip()
        if not value or value.startswith(("#", ";")):
            continue
        indent = len(line) - len(line.lstrip())
        if in_section and option_open and indent > indent_level:
            continue
        indent_level = indent
        header = configparser.RawConfigParser.SECTCRE.match(value)
        if header:
            found.append((index, header.group("header")))
            in_section, option_open = True, False
            continue
        option = configparser.RawConfigParser.OPTCRE.match(value)
        if in_section and option and option.group("option").rstrip():
            option_open = True
    return found


def profile_of(header: str) -> str | None:
    """The profile a section header defines for botocore (``build_profile_map``), or None."""
    if header == "default":
        return "default"
    if not header.startswith("profile"):
        return None
    import shlex

    try:
        parts = shlex.split(header)
    except ValueError:
        return None
    return parts[1] if len(parts) == 2 else None


def _is_marker(line: str) -> bool:
    return line.strip().startswith(MANAGED_MARKER)


def _profile_sections(lines: Sequence[str], name: str) -> list[tuple[int, int, bool]]:
    """(start, end, managed) of each section botocore reads as profile ``name``: marker, header and
    settings, not trailing comments. When there are several, botocore uses the last."""
    headers = section_headers(lines)
    sections = []
    for number, (index, header) in enumerate(headers):
        if profile_of(header) != name:
            continue
        following = headers[number + 1][0] if number + 1 < len(headers) else len(lines)
        end = index + 1
        for later in range(index + 1, following):
            text = lines[later].strip()
            if text and text[0] not in "#;":
                end = later + 1
        managed = index > 0 and _is_marker(lines[index - 1])
        sections.append(((index - 1 if managed else index), end, managed))
    return sections


def managed_profiles(text: str) -> list[str]:
    lines = text.splitlines()
    names = []
    for index, header in section_headers(lines):
        name = profile_of(header)
        if name is not None and index > 0 and _is_marker(lines[index - 1]):
            names.append(name)
    return names


# botocore reads both [default] and [profile default] as the profile every
# command uses when none is named: rolebroker never takes it over unasked.
DEFAULT_PROFILE = "default"


def apply_profiles(original: str, profiles: Sequence[tuple[str, list[str]]], *, force: bool
                   ) -> tuple[str, list[tuple[str, str]]]:
    """Put each rendered profile into the file text; every other line stays byte for byte."""
    lines = original.splitlines(keepends=True)
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    outcome: list[tuple[str, str]] = []
    for name, rendered in profiles:
        block = [line + newline for line in rendered]
        if name == DEFAULT_PROFILE and not force:
            outcome.append((name, "default"))
            continue
        found = _profile_sections(lines, name)
        if not found:
            if lines and not lines[-1].endswith(("\n", "\r")):
                lines[-1] += newline
            if lines and lines[-1].strip():
                lines.append(newline)
            lines.extend(block)
            outcome.append((name, "added"))
            continue
        start, end, managed = found[-1]
        if not managed and not force:
            outcome.append((name, "kept"))
            continue
        if lines[start:end] == block:
            outcome.append((name, "unchanged"))
            continue
        lines[start:end] = block
        outcome.append((name, "updated" if managed else "replaced"))
    return "".join(lines), outcome


def read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return ""
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc


def write_aws_config(path: str, text: str) -> None:
    """Replace the AWS config atomically, keeping its mode; create ``~/.aws`` 0700 when missing."""
    directory = os.path.dirname(path)
    try:
        if directory and not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except FileNotFoundError:
            mode = 0o600
        atomic_write(path, text.encode("utf-8", "surrogateescape"), mode)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc

