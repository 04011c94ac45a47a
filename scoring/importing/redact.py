"""Credentials never leave the importer: every URI it prints, logs or stores goes through here."""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote, urlsplit, urlunsplit

# scheme://user:secret@host or scheme://token@host, wherever it appears in a text.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s'\"]+@")


def redact_uri(uri: str) -> str:
    """Drop user:password from a URI, keeping the rest readable for a reviewer."""
    parts = urlsplit(uri)
    if parts.password is None and parts.username is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def secrets_of(uri: str) -> list[str]:
    """The user name and password in `uri`, raw and URL-decoded, for scrubbing free text."""
    parts = urlsplit(uri)
    found = [parts.username, parts.password]
    found += [unquote(value) for value in found if value]
    return sorted({value for value in found if value}, key=len, reverse=True)


def redact_text(text: str, secrets: list[str] = ()) -> str:  # type: ignore[assignment]
    """Scrub credentials from a message: any userinfo in a URL, and each of `secrets` wherever
    it appears (a library may quote a URI in its own words)."""
    text = _USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


class RedactingFilter(logging.Filter):
    """Scrubs log records, so a library that logs the tracking URI cannot leak it either."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage(), self.secrets)
        record.args = None
        return True
