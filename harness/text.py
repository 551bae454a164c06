"""Text normalization shared by the validator and the metrics, so that both agree on what "contains" means.

Left out on purpose: stemming, stop words, Unicode folding beyond casefold; a quote either is in the
text (modulo whitespace) or it is not.
"""

from __future__ import annotations

import re

_WHITESPACE = re.compile(r"\s+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def normalize_whitespace(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends: "a \\n  b" -> "a b"."""
    return _WHITESPACE.sub(" ", text).strip()


def normalize_for_match(text: str) -> str:
    """Whitespace-normalize, casefold and drop thousands separators: "10,000  GB" -> "10000 gb".

    Used to decide whether an answer contains a fact.
    """
    return _THOUSANDS.sub("", normalize_whitespace(text).casefold())
