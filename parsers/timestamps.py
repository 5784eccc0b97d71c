"""Timestamp parsing to ECS ``@timestamp`` strings: ISO-8601 UTC with millisecond precision and a ``Z``.

A timestamp that is present but cannot be parsed is bad input (``InputRejected(TIMESTAMP)``): indexing such an
event at "now" would silently move it out of every detection window. Callers decide what a *missing* timestamp
means (usually: fall back to the Kafka record time).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

from parsers.base import ErrorType
from parsers.limits import InputRejected

Clock = Callable[[], datetime]

# Extended ISO-8601 / RFC 3339, also with a space instead of "T" and any number of fraction digits. Handled
# without datetime parsing in the common UTC case because it is on every event's hot path.
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*(Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?"
)
_APACHE = "%d/%b/%Y:%H:%M:%S %z"
_RFC3164 = re.compile(r"([A-Z][a-z]{2}) {1,2}(\d{1,2}) (\d{2}):(\d{2}):(\d{2})")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                        "Nov", "Dec"), start=1)}


def system_clock() -> datetime:
    return datetime.now(UTC)


# ".mmmZ" for every millisecond, and "YYYY-MM-DDTHH:MM:SS" per second already formatted: the ingest time is
# formatted for every record, and formatting a datetime costs more than the rest of a small record's timestamps.
_MILLIS = [f".{ms:03d}Z" for ms in range(1000)]
_SECONDS: dict[tuple[int, int, int, int, int, int], str] = {}
_SECONDS_MAX = 4096


def _seconds_prefix(key: tuple[int, int, int, int, int, int]) -> str:
    if len(_SECONDS) >= _SECONDS_MAX:
        _SECONDS.clear()
    year, month, day, hour, minute, second = key
    prefix = _SECONDS[key] = f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}"
    return prefix


def format_ms(dt: datetime) -> str:
    """ECS timestamp string; naive datetimes are taken as UTC."""
    tz = dt.tzinfo
    if tz is not None and tz is not UTC:
        dt = dt.astimezone(UTC)
    key = (dt.year, dt.month, dt.day, dt.hour, dt.minute, dt.second)
    prefix = _SECONDS.get(key)
    if prefix is None:
        prefix = _seconds_prefix(key)
    return prefix + _MILLIS[dt.microsecond // 1000]


def epoch_ms_to_iso(ms: int) -> str:
    return format_ms(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms))


def _bad(value: object) -> InputRejected:
    return InputRejected(ErrorType.TIMESTAMP, f"cannot parse timestamp {str(value)[:100]!r}")


def _from_epoch(value: float) -> str:
    # Magnitude tells the unit: seconds (zap, logrus), milliseconds (pino, bunyan), micro- or nanoseconds.
    magnitude = abs(value)
    if magnitude >= 1e17:
        value /= 1e9
    elif magnitude >= 1e14:
        value /= 1e6
    elif magnitude >= 1e11:
        value /= 1e3
    try:
        return format_ms(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=value))
    except (OverflowError, ValueError):
        raise _bad(value) from None


def _offset(tz: str) -> timezone:
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError("bad offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _from_iso_match(m: re.Match[str]) -> str:
    year, month, day, hour, minute, second, frac, tz = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    dt = datetime(int(year), int(month), int(day), int(hour), int(minute), min(int(second), 59), micro)
    if tz is None or tz in ("Z", "z", "UTC"):
        return f"{year}-{month}-{day}T{hour}:{minute}:{dt.second:02d}.{micro // 1000:03d}Z"
    return format_ms(dt.replace(tzinfo=_offset(tz)))


# The fast path's strict shape checks, each done once per distinct value: "YYYY-MM-DDT" (a real calendar date)
# and "HH:MM:SSZ" (hour < 24, minute and second < 60). Events of a day share the first, events of a second the
# second; both bounded (cleared when full).
_DATE_OK: dict[str, bool] = {}
_TIME_OK: dict[str, bool] = {}
_SHAPE_CACHE_MAX = 8192


def _date_ok(date: str) -> bool:
    ok = False
    if (len(date) == 11 and date[4] == "-" and date[7] == "-" and date[10] == "T" and date.isascii()
            and date[:4].isdigit() and date[5:7].isdigit() and date[8:10].isdigit()):
        try:
            datetime(int(date[:4]), int(date[5:7]), int(date[8:10]))
            ok = True
        except ValueError:
            ok = False
    if len(_DATE_OK) >= _SHAPE_CACHE_MAX:
        _DATE_OK.clear()
    _DATE_OK[date] = ok
    return ok


def _time_ok(time: str) -> bool:
    hour, minute, second = time[:2], time[3:5], time[6:8]
    ok = (len(time) == 8 and time[2] == ":" and time[5] == ":" and time.isascii()
          and hour.isdigit() and minute.isdigit() and second.isdigit()
          and hour < "24" and minute < "60" and second < "60")
    if len(_TIME_OK) >= _SHAPE_CACHE_MAX:
        _TIME_OK.clear()
    _TIME_OK[time] = ok
    return ok


# fast_utc_seconds' results per distinct text: events of the same second share their time text, so the hot path
# (CloudTrail eventTime) is one dict hit. Bounded (cleared when full); only successes are stored.
UTC_TEXT: dict[str, str] = {}
_UTC_TEXT_MAX = 8192


def fast_utc_seconds(text: str) -> str | None:
    """``YYYY-MM-DDTHH:MM:SS[.fff...]Z`` (CloudTrail's and Kubernetes' shapes) -> ECS string by slicing, or None
    when the text is not exactly that shape (then the general parser decides). Strict: ASCII digits, a real
    calendar date, hour < 24, minute and second < 60 (leap seconds and anything odd take the general path)."""
    cached = UTC_TEXT.get(text)
    if cached is not None:
        return cached
    size = len(text)
    if size < 20 or text[-1] != "Z":
        return None
    date, time = text[:11], text[11:19]
    date_ok = _DATE_OK.get(date)
    if date_ok is None:
        date_ok = _date_ok(date)
    time_ok = _TIME_OK.get(time)
    if time_ok is None:
        time_ok = _time_ok(time)
    if not (date_ok and time_ok):
        return None
    if size == 20:
        result = text[:19] + ".000Z"
    else:
        fraction = text[20:-1]
        if not (text[19] == "." and fraction.isdigit() and fraction.isascii()):
            return None
        result = f"{text[:19]}.{fraction[:3].ljust(3, '0')}Z"  # milliseconds, truncated like the general path
    if len(UTC_TEXT) >= _UTC_TEXT_MAX:
        UTC_TEXT.clear()
    UTC_TEXT[text] = result
    return result


# parse_timestamp's results for texts the fast path does not take (e.g. "2022-12-11 19:42:55"), per distinct text;
# bounded (cleared when full), successes only.
_PARSED_TEXT: dict[str, str] = {}


def parse_timestamp(value: object) -> str:
    """Parse a timestamp in any of the shapes the sources use; raise ``InputRejected`` if it is unparseable."""
    if type(value) is str:
        cached = _PARSED_TEXT.get(value)
        if cached is not None:
            return cached
        if len(value) >= 20:
            fast = fast_utc_seconds(value)
            if fast is not None:
                return fast
        parsed = _parse_general(value)
        if len(_PARSED_TEXT) >= _UTC_TEXT_MAX:
            _PARSED_TEXT.clear()
        _PARSED_TEXT[value] = parsed
        return parsed
    return _parse_general(value)


def _parse_general(value: object) -> str:
    if isinstance(value, bool):
        raise _bad(value)
    if isinstance(value, int | float):
        return _from_epoch(float(value))
    if not isinstance(value, str):
        raise _bad(value)
    text = value.strip()
    m = _ISO.fullmatch(text)
    try:
        if m is not None:
            return _from_iso_match(m)
        if text.replace(".", "", 1).isdigit():
            return _from_epoch(float(text))
        if "/" in text and ":" in text:
            return format_ms(datetime.strptime(text, _APACHE))
        return format_ms(datetime.fromisoformat(text))
    except (ValueError, OverflowError):
        raise _bad(value) from None


def parse_iso_or_none(value: object) -> str | None:
    """Lenient variant for secondary fields (e.g. session creation dates): unparseable means absent."""
    if not isinstance(value, str):
        return None
    if len(value) >= 20:
        fast = fast_utc_seconds(value)
        if fast is not None:
            return fast
    m = _ISO.fullmatch(value)
    if m is None:
        return None
    try:
        return _from_iso_match(m)
    except ValueError:
        return None


def parse_rfc3164(text: str, reference: datetime) -> str:
    """BSD syslog timestamps have no year: take the reference's, or the previous one if that lands in the future."""
    m = _RFC3164.fullmatch(text)
    if m is None or m.group(1) not in _MONTHS:
        raise _bad(text)
    month = _MONTHS[m.group(1)]
    try:
        dt = datetime(reference.year, month, int(m.group(2)), int(m.group(3)), int(m.group(4)),
                      int(m.group(5)), tzinfo=UTC)
        if dt - reference > timedelta(days=1):
            dt = dt.replace(year=reference.year - 1)
    except ValueError:
        raise _bad(text) from None
    return format_ms(dt)
