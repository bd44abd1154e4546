"""What reaches the terminal: server strings made safe, tables, times and durations."""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

# Terminal escape sequences (ECMA-48): CSI, OSC (titles, hyperlinks) and the
# other strings a terminal acts on, with 7-bit (ESC x) or 8-bit (C1) introducers.
_ESCAPE_SEQUENCE = (
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x9d\x90\x98\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)


def one_line(text: str, limit: int = 300) -> str:
    """Text from elsewhere (a server, a command) made safe for one terminal line.

    Escape sequences go whole, so none can move the cursor, retitle the window
    or hide a link; line breaks become spaces; other control and format
    characters (C0, C1, bidi overrides, zero-width) are dropped.
    """
    import re

    text = re.sub(_ESCAPE_SEQUENCE, "", text)
    kept = "".join(" " if ch.isspace() else ch for ch in text if ch.isprintable() or ch.isspace())
    flat = " ".join(kept.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def safe_lines(text: str, limit: int = 4000) -> str:
    """Several lines from elsewhere (SQL, a note) made safe like ``one_line``, keeping line breaks and indents."""
    import re

    lines = []
    for line in re.sub(_ESCAPE_SEQUENCE, "", text).splitlines():
        kept = "".join(" " if ch.isspace() else ch for ch in line if ch.isprintable() or ch.isspace())
        lines.append(kept.rstrip()[:limit])
    return "\n".join(lines)


def parse_timestamp(value: str) -> float:
    """Seconds since the epoch for an ISO 8601 time (``Z`` and any fraction accepted on 3.9)."""
    import re
    from datetime import datetime, timezone

    if not re.match(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+([Zz]|[+-][0-9]{2}:?[0-9]{2})?\Z", value):
        raise ValueError(f"not an ISO 8601 time: {value!r}")
    text = value
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = re.sub(r"([+-][0-9]{2})([0-9]{2})\Z", r"\1:\2", text)
    # Before 3.11, fromisoformat only takes 3 or 6 fractional digits.
    text = re.sub(r"\.([0-9]+)", lambda m: "." + (m.group(1) + "000000")[:6], text, count=1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def local_time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(epoch))


def human_duration(seconds: object) -> str:
    if not isinstance(seconds, int) or isinstance(seconds, bool):
        return "-"
    hours, rest = divmod(seconds, 3600)
    minutes = rest // 60
    if hours and minutes:
        return f"{hours}h{minutes:02d}m"
    return f"{hours}h" if hours else f"{minutes}m"


def time_text(value: object) -> str:
    """An ISO 8601 time from the broker in local time; anything else made safe as it is ("-" for none)."""
    if not isinstance(value, str) or not value:
        return "-"
    try:
        return local_time(parse_timestamp(value))
    except ValueError:
        return one_line(value, 40)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(headers), *[list(row) for row in rows]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines) + "\n"
