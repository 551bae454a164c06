"""Sign a scorecard, so that a change made to it after grading is seen: HMAC-SHA256 with the interviewer's key.

The key is 32 random bytes in ~/.config/ragkata/grader.key (RAGKATA_GRADER_KEY_FILE moves it), made on
first use and readable by its owner only. The candidate's jail never sees the home folder, so their code
cannot re-sign a scorecard it changed; under --isolation none it could, and the scorecard says so.
scorecard.md and scorecard.html are drawn from scorecard.json and show its digest; --render-only checks
the JSON before drawing them again.
Left out on purpose: public-key signatures (one interviewer signs and checks), and checking md or html.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any, Mapping

FIELD = "digest"
SCHEME = "hmac-sha256:"
KEY_FILE_ENV = "RAGKATA_GRADER_KEY_FILE"


def key_path() -> Path:
    return Path(os.environ.get(KEY_FILE_ENV) or Path.home() / ".config" / "ragkata" / "grader.key")


def _key(create: bool) -> bytes | None:
    path = key_path()
    if not path.exists() and create:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(secrets.token_bytes(32))
        except FileExistsError:
            pass  # made by another grade at the same moment
    try:
        return path.read_bytes()
    except OSError:
        return None


def canonical(data: Mapping[str, Any]) -> bytes:
    """The bytes signed: the JSON without its digest field, keys sorted, as json would read it back."""
    plain = json.loads(json.dumps({k: v for k, v in data.items() if k != FIELD}))
    return json.dumps(plain, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def sign(data: Mapping[str, Any]) -> str:
    """The digest of a scorecard's JSON data, made with the interviewer's key (created if missing)."""
    key = _key(create=True)
    assert key is not None, key_path()
    return SCHEME + hmac.new(key, canonical(data), hashlib.sha256).hexdigest()


def check(data: Mapping[str, Any]) -> str | None:
    """None when the data carries the digest this key gives it; else the reason, worded for the interviewer."""
    stated = data.get(FIELD)
    if not isinstance(stated, str) or not stated.startswith(SCHEME):
        return "it carries no digest, so a change after grading could not be seen"
    key = _key(create=False)
    if key is None:
        return (f"the signing key {key_path()} is missing, so its digest cannot be checked (it was graded on another "
                f"machine or account; set {KEY_FILE_ENV} to that key file)")
    if not hmac.compare_digest(stated, SCHEME + hmac.new(key, canonical(data), hashlib.sha256).hexdigest()):
        return "it was changed after grading: its digest does not match its content"
    return None
