"""Node logs: `plain` or `json` lines on stderr, with per-module levels and secret redaction.

A level spec is either one level (`info`) or a comma-separated list of
`LOGGER:LEVEL` entries, `*` naming the default for every other logger:

    p2p:debug,marketchain.consensus:info,*:warning

A logger name covers its children (`p2p` covers `p2p.peer`, `p2p.pex` …). The node's
own loggers are `marketchain.node`, `marketchain.consensus`, `marketchain.sync` and
`marketchain.http`; the peer-to-peer layer's are `p2p.*`.

**Structured fields.** A log call gives the values its message names as separate
fields with `extra=log_fields(event="block_final", height=7, …)`: `json` lines carry
each one as its own key beside `message` (for log shippers to filter on); `plain` lines
do not repeat them, since the message already says them. Fields given directly with
`extra={…}` are shown by both formats (`plain` appends `name=value`).

Seeds and secret keys must never reach a log. Nothing in the node logs them; as a
second line of defence every record passes `RedactSecrets`, which blanks any run of
64 or more hex characters that follows the word `seed` or `secret`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
          "critical": logging.CRITICAL}
"""Level names accepted in a spec (case-insensitive; `warn` is taken for `warning`)."""
FORMATS = ("plain", "json")
"""Log line formats."""
DEFAULT_LOGGER = "*"
"""The name that sets the level of every logger not named otherwise."""
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""The layout of a `plain` line."""
REDACTED = "[REDACTED]"
"""What a redacted secret is replaced with."""
STRUCTURED_FIELDS = "structured_fields"
"""The record attribute `log_fields` sets: fields that the message already says."""

_SECRET = re.compile(
    r"(?i)(?P<word>seed|secret)(?P<between>[^\n]{0,24}?)(?<![0-9a-f])(?P<hex>[0-9a-f]{64,})(?![0-9a-f])"
)
_SECRET_FIELD = re.compile(r"(?i)seed|secret|passphrase|password")
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class LevelSpecError(ValueError):
    """A level spec that cannot be used; the message says which entry and why."""


@dataclass(frozen=True)
class LevelSpec:
    """Parsed `--log-level`: a default level and levels of named loggers."""

    default: int = logging.INFO
    """Level of every logger not named in `loggers`."""
    loggers: dict[str, int] = field(default_factory=dict)
    """Level of each named logger (and its children)."""


def _level(name: str, entry: str) -> int:
    key = name.strip().lower()
    level = LEVELS.get("warning" if key == "warn" else key)
    if level is None:
        raise LevelSpecError(
            f"{entry!r}: unknown level {name.strip()!r} (use one of {', '.join(LEVELS)})"
        )
    return level


def parse_level_spec(spec: str) -> LevelSpec:
    """Parse `info` or `p2p:debug,marketchain.consensus:info,*:warning`."""
    if not spec.strip():
        raise LevelSpecError("the level spec is empty: write e.g. info or p2p:debug,*:warning")
    default = logging.INFO
    loggers: dict[str, int] = {}
    for entry in spec.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, separator, level_name = entry.rpartition(":")
        if not separator:
            default = _level(entry, entry)
            continue
        name = name.strip()
        if not name:
            raise LevelSpecError(f"{entry!r}: the logger name is missing (write LOGGER:LEVEL, or *:LEVEL)")
        if name == DEFAULT_LOGGER:
            default = _level(level_name, entry)
        else:
            loggers[name] = _level(level_name, entry)
    return LevelSpec(default, loggers)


def redact(text: str) -> str:
    """`text` with every 64+ hex-character value after `seed` or `secret` blanked."""
    return _SECRET.sub(lambda match: match.group("word") + match.group("between") + REDACTED, text)


def _redact_value(name: str, value: Any) -> Any:
    if _SECRET_FIELD.search(name):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    return value


def log_fields(**fields: Any) -> dict[str, Any]:
    """The `extra=` of a log call whose message already says these values: `json` lines
    carry each as its own key (bytes as hex), `plain` lines do not repeat them.

        log.info("final %d", height, extra=log_fields(event="block_final", height=height))
    """
    return {STRUCTURED_FIELDS: fields}


class RedactSecrets(logging.Filter):
    """Blank seeds and secrets in the message, the `extra` fields and the traceback of a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        for name, value in list(vars(record).items()):
            if name == STRUCTURED_FIELDS and isinstance(value, dict):
                setattr(record, name, {key: _redact_value(key, item) for key, item in value.items()})
            elif name not in _RECORD_ATTRIBUTES:
                setattr(record, name, _redact_value(name, value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record carries beyond the standard ones (given with `extra=`), but
    not those of `log_fields`."""
    return {
        name: value for name, value in vars(record).items()
        if name not in _RECORD_ATTRIBUTES and name != STRUCTURED_FIELDS
    }


def structured_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a record got from `log_fields` (none if it got none)."""
    fields = getattr(record, STRUCTURED_FIELDS, None)
    return fields if isinstance(fields, dict) else {}


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, then the
    fields of `log_fields` and of `extra=` (none replaces one of the four first keys)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in structured_fields(record).items():
            line.setdefault(name, value)
        for name, value in extra_fields(record).items():
            line.setdefault(name, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=_json_default, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """`TIME LEVEL LOGGER: MESSAGE key=value …`, times in UTC (`key=value` for the fields
    of `extra=`; those of `log_fields` are already in the message)."""

    converter = time.gmtime

    def __init__(self) -> None:
        super().__init__(PLAIN_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = extra_fields(record)
        if extras:
            first, newline, rest = text.partition("\n")
            pairs = " ".join(f"{name}={json.dumps(value, default=_json_default)}" for name, value in extras.items())
            text = f"{first} {pairs}{newline}{rest}"
        return text


class _MarketchainHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure_logging` installs (so that a second call replaces it)."""


_configured_loggers: set[str] = set()


def configure_logging(level: str | LevelSpec = "info", log_format: str = "plain",
                      stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to `stream` (stderr) as `plain` or `json` lines, at the levels of `level`.

    Raises LevelSpecError for a bad spec and ValueError for an unknown format. Calling
    it again replaces the previous set-up.
    """
    spec = parse_level_spec(level) if isinstance(level, str) else level
    if log_format not in FORMATS:
        raise ValueError(f"unknown log format {log_format!r} (use plain or json)")
    handler = _MarketchainHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else PlainFormatter())
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    for old in [item for item in root.handlers if isinstance(item, _MarketchainHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(spec.default)
    for name in _configured_loggers - set(spec.loggers):
        logging.getLogger(name).setLevel(logging.NOTSET)
    for name, logger_level in spec.loggers.items():
        logging.getLogger(name).setLevel(logger_level)
    _configured_loggers.clear()
    _configured_loggers.update(spec.loggers)
    return handler


def reset_logging() -> None:
    """Undo `configure_logging`: remove its handler and the per-logger levels it set."""
    root = logging.getLogger()
    for handler in [item for item in root.handlers if isinstance(item, _MarketchainHandler)]:
        root.removeHandler(handler)
    for name in _configured_loggers:
        logging.getLogger(name).setLevel(logging.NOTSET)
    _configured_loggers.clear()
    root.setLevel(logging.WARNING)
