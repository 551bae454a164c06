"""Text normalization shared by the validator and the metrics, so that both agree on what "contains" means.

Left out on purpose: stemming, stop words, Unicode folding beyond casefold; a quote either is in the
text (modulo whitespace) or it is not, and a fact either is in an answer (contains_fact) or it is not.
"""

from __future__ import annotations

import re

_WHITESPACE = re.compile(r"\s+")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")


def normalize_whitespace(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends: "a \\n  b" -> "a b"."""
    return _WHITESPACE.sub(" ", text).strip()


def normalize_for_match(text: str) -> str:
    """Whitespace-normalize, casefold and drop thousands separators: "10,000  GB" -> "10000 gb"."""
    return _THOUSANDS.sub("", normalize_whitespace(text).casefold())


def contains_fact(text: str, fact: str) -> bool:
    """True when the fact occurs in the text after normalize_for_match, not glued to a letter or digit.

    "5 GB" is in "up to 5 gb"; "4" is not in "64 MiB" and "5" is not in "2025-07-01", since a fact that
    starts or ends with a letter or digit must not continue a longer word or number there.
    """
    fact = normalize_for_match(fact)
    if not fact:
        return False
    left = r"(?<![^\W_])" if fact[0].isalnum() else ""
    right = r"(?![^\W_])" if fact[-1].isalnum() else ""
    return re.search(left + re.escape(fact) + right, normalize_for_match(text)) is not None
