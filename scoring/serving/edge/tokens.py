"""The bearer tokens callers may present, read from a file (SCORING_API_TOKENS_FILE): one token
a line, blank lines and `#` comments ignored.

The file is looked at again (one `stat`) at most once a second, at a check, and re-read only
when its identity or contents changed (device, inode, size, modification time): a stat on
every request cost more than the rest of the check. A Kubernetes Secret
volume swaps a symlink to a new folder on update, so the inode changes; an edited file changes
its size or mtime. Rotation is then: put the new token next to the old one, move callers over,
remove the old one; both are valid in between, with no restart.

Tokens are kept only as SHA-256 digests and compared with `hmac.compare_digest` against every
one of them, so the time a check takes says nothing about how much of a token matched.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import time
from pathlib import Path

log = logging.getLogger("bentoml.credit_scoring")

# How stale the tokens may be: a rotation is seen within this (the kubelet itself takes up to
# a minute to update a mounted Secret).
RECHECK_S = 1.0
# (device, inode, size, mtime_ns) of the file as last read; None = missing.
Stamp = tuple[int, int, int, int] | None


class TokensError(ValueError):
    """The tokens file cannot be used at start-up (missing, unreadable or without a token)."""


def read_tokens(path: Path) -> list[str]:
    """The tokens in `path`: one a line, surrounding whitespace dropped, blanks and comments
    skipped."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def _digest(token: str | bytes) -> bytes:
    data = token.encode("utf-8") if isinstance(token, str) else token
    return hashlib.sha256(data).digest()


def _stamp(path: Path) -> Stamp:
    try:
        found = os.stat(path)  # follows the Secret volume's symlinks
    except OSError:
        return None
    return found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns


class TokenFile:
    """The valid tokens, kept in step with their file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: Stamp = None
        self._digests: tuple[bytes, ...] = ()
        self._checked_at = -RECHECK_S
        self.reloads = 0
        if not self._refresh():
            raise TokensError(f"{path}: cannot read it")
        if not self._digests:
            raise TokensError(f"{path}: holds no token (one a line)")

    def _refresh(self) -> bool:
        """Re-read the file if it changed; False when it cannot be read (then no token is
        valid: a missing file never opens the service)."""
        self._checked_at = time.monotonic()
        stamp = _stamp(self.path)
        if stamp == self._stamp and stamp is not None:
            return True
        try:
            tokens = read_tokens(self.path) if stamp is not None else None
        except (OSError, UnicodeDecodeError):
            tokens = None
        self._stamp = stamp
        self.reloads += 1
        if tokens is None:
            self._digests = ()
            log.warning(
                "API tokens file %s unreadable: every protected request is refused", self.path
            )
            return False
        self._digests = tuple(_digest(token) for token in tokens)
        if not tokens:
            log.warning(
                "API tokens file %s holds no token: every protected request is refused", self.path
            )
        else:
            log.info("API tokens read from %s: %d valid", self.path, len(tokens))
        return True

    @property
    def count(self) -> int:
        return len(self._digests)

    def accepts(self, presented: bytes) -> bool:
        """Whether `presented` is one of the file's tokens, compared in constant time."""
        if time.monotonic() - self._checked_at >= RECHECK_S:
            self._refresh()
        given = _digest(presented)
        matched = False
        for digest in self._digests:  # no early exit: every token is compared
            matched |= hmac.compare_digest(given, digest)
        return matched
