"""Abstain on what the corpus lacks: a question that names a code, region, version, plan or product no
document mentions cannot be answered from it, however well some sentence matches the rest.

Two kinds of name are read from the question. An identifier (KOS-4037, eu-central-1, ruby3.3, CLI 4.8,
`a_config_key`, "the deep-vault class") is decisive: if the corpus never writes it, the pipeline abstains.
A proper name (FreeBSD, SFTP, "Personal Health Dashboard") is weaker evidence, since a customer may
mention their own tools ("Our Terraform run…"), so it counts only when the answer does not state a value
of the kind asked for either.
Left out on purpose: values the corpus never states about things it does have (`unstated-value`); no
score this pipeline computes separates those from answerable questions (NOTES.md).
"""

from __future__ import annotations

import re
from typing import Sequence

from exercise.contracts import Document

# Nouns that make the word before them a name: "the Scale plan", "the deep-vault class", "Go SDK".
KINDS = r"(?:plan|tier|region|runtime|class|edition|sdk|cli|integration|service|program|programme|report|exam|" \
        r"dashboard|add-on|package|bundle|provider|protocol)"
_TOKEN = re.compile(r"[A-Za-z0-9](?:[\w.\-/]*[A-Za-z0-9])?")
_QUANTITY = re.compile(r"\d[\d,.]*(?:[a-z]{1,2}|-[a-z]+)", re.I)  # 15k, 4x, 1-star: an amount, not a name
_VERSION = re.compile(r"\d+(?:\.\d+)+")
_VERSION_CUE = re.compile(r"(?:version|cli|sdk|runtime|v)\W*$", re.I)
_CAPITALIZED_RUN = re.compile(r"(?<![\w.\-])([A-Z][A-Za-z0-9]*(?:\s+[A-Z][A-Za-z0-9]*)*)(?!\w)")
_NAME_THEN_KIND = re.compile(rf"(?<![\w.\-])([A-Z][A-Za-z0-9]*(?:\s+[A-Z][A-Za-z0-9]*)*)(?![\w\-])(\s+{KINDS}\b)")
_MID_SENTENCE_NAME = re.compile(r"(?<=[a-z,] )([A-Z][A-Za-z0-9]*)")
# Capitalized words that name nothing: question words, pronouns, greetings.
FUNCTION_WORDS = frozenset("I A An The What Which How When Where Who Why Is Are Do Does Can If Our My We Per For And Or "
                           "Any OK Hi Hey Please Thanks".split())


def identifiers(question: str) -> list[str]:
    """Codes, regions, versions, backticked terms and "<name> <kind>" phrases the question writes.

    "PUT fails with KOS-4037 in eu-central-1 on CLI 4.8" -> ["KOS-4037", "eu-central-1", "4.8"];
    "What does the Scale plan cost?" -> ["Scale plan"]; "How many rules per bucket?" -> [].
    """
    found = [m.group(1) for m in re.finditer(r"`([^`]+)`", question)]
    for m in _TOKEN.finditer(question):
        token = m.group(0).rstrip(".")
        digit, alpha = any(c.isdigit() for c in token), any(c.isalpha() for c in token)
        kind = re.match(rf"\s+{KINDS}\b", question[m.end():], re.I)
        if _QUANTITY.fullmatch(token):
            continue
        if digit and alpha:
            found.append(token)
        elif _VERSION.fullmatch(token) and _VERSION_CUE.search(question[: m.start()]):
            found.append(token)
        elif ("-" in token or "_" in token) and alpha and kind:
            found.append(token + kind.group(0).lower())
    for m in _NAME_THEN_KIND.finditer(question):
        words = [w for w in m.group(1).split() if w not in FUNCTION_WORDS and w != "Kestrel"]
        if words:
            found.append(" ".join(words) + m.group(2))
    return list(dict.fromkeys(found))


def proper_names(question: str) -> list[str]:
    """Capitalized words or runs of them that are not merely a sentence's first word, and acronyms.

    "Does the CLI have a build for FreeBSD?" -> ["CLI", "FreeBSD"]; "Is there a Personal Health Dashboard?"
    -> ["Personal Health Dashboard"]; "Which SKU is KQ-REQ-1M?" -> ["SKU"] (the code is an identifier).
    """
    found = []
    for m in _CAPITALIZED_RUN.finditer(question):
        words = m.group(1).split()
        joined = question[m.end() : m.end() + 2]
        if joined[:1] == "-" and (len(words) > 1 or not words[0].isupper() or not joined[1:].islower()):
            continue  # part of a compound ("Select-tier", "KQ-REQ-1M"); an acronym before a word stays ("GPU-backed")
        before = question[: m.start()].rstrip()
        if (not before or before[-1] in ".!?:;(\"'—") and not words[0].isupper():
            words = words[1:]  # a sentence's first word is capitalized anyway
        elif before[-1:].isdigit():
            words = words[1:]  # a unit after a number ("600 KB JSON")
        while words and words[0] in FUNCTION_WORDS:
            words = words[1:]
        while words and words[-1] in FUNCTION_WORDS:
            words = words[:-1]
        if words:
            found.append(" ".join(re.sub(r"(?<=[A-Z])s$", "", w) for w in words))  # "IPs" -> "IP"
    return list(dict.fromkeys(found))


class CorpusNames:
    """Which names the corpus writes: its text (case and spacing aside) and the capitalized words it uses as
    names mid-sentence ("the Enterprise plan", "an IP allowlist")."""

    def __init__(self, documents: Sequence[Document]):
        text = " ".join(" ".join(f"{d.title} {d.text}" for d in documents).split())
        self.folded = text.casefold()
        self.names = frozenset(_MID_SENTENCE_NAME.findall(text))

    def writes(self, name: str) -> bool:
        """The corpus holds the name as a whole word, with hyphens, underscores or spaces read alike."""
        n = name.casefold()
        variants = {n, n.replace("-", " "), n.replace(" ", "-"), n.replace("_", " "), n.replace(" ", "")}
        return any(re.search(rf"(?<!\w){re.escape(v)}(?!\w)", self.folded) for v in variants)

    def knows(self, run: str) -> bool:
        """A proper name is known when the corpus writes it, or when every word of a longer run is a name
        the corpus uses ("Enterprise IP" from "the Enterprise plan" and "IP allowlist")."""
        words = run.split()
        return self.writes(run) or (len(words) > 1 and all(w in self.names or w.rstrip("s") in self.names for w in words))

    def unknown_identifiers(self, question: str) -> list[str]:
        return [name for name in identifiers(question) if not self.writes(name)]

    def unknown_proper_names(self, question: str) -> list[str]:
        return [name for name in proper_names(question) if not self.knows(name)]
