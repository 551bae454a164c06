"""Text normalization shared by the validator and the metrics, so that both agree on what "contains" means.

Left out on purpose: stemming, stop words, Unicode folding beyond casefold; a quote either is in the
text (modulo whitespace) or it is not, and a fact either is in an answer (contains_fact) or it is not.
extract_values reads the numbers, amounts, dates and identifiers a text states; it converts no units
("1 GiB" stays apart from "1,024 MiB") and reads no spelled-out numbers ("two hours").
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import NamedTuple

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


# --- values ------------------------------------------------------------------------------------------


class Value(NamedTuple):
    """A value a text states, spelled canonically so that variants compare equal.

    text: the canonical spelling, e.g. "90 day", "10000", "$0.02", "25%", "2025-06-17", "KOS-4031".
    number: for an amount (a bare number, a number with a unit, money, a percentage) its canonical
    number, e.g. "90" for "90 day"; "" for dates, times, ratios, identifiers and versions.
    """

    text: str
    number: str = ""

    @property
    def bare(self) -> bool:
        """True for a number stated without a unit: Value("10000", "10000")."""
        return self.number != "" and self.text == self.number


_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"  # "10,000.5" or "10000.5"
_END = r"(?!\w|\.\d)"  # a value must not run on into a word or a longer number
_UNITS = {  # canonical unit: its spellings, matched case-insensitively (except "m")
    "ms": ("ms", "msec", "millisecond", "milliseconds"),
    "s": ("s", "sec", "secs", "second", "seconds"),
    "min": ("min", "mins", "minute", "minutes"),
    "h": ("h", "hr", "hrs", "hour", "hours"),
    "day": ("d", "day", "days"),
    "business day": ("business day", "business days"),
    "week": ("wk", "wks", "week", "weeks"),
    "month": ("mo", "month", "months"),
    "year": ("yr", "yrs", "year", "years"),
    "B": ("byte", "bytes"),
    **{unit: (unit.casefold(),) for unit in ("KB", "MB", "GB", "TB", "PB", "KiB", "MiB", "GiB", "TiB", "PiB",
                                              "Kbps", "Mbps", "Gbps")},
}
_UNIT_OF = {spelling: unit for unit, spellings in _UNITS.items() for spelling in spellings} | {"m": "min"}
_UNIT = "|".join([re.escape(s).replace(r"\ ", r"\s+") for s in sorted(_UNIT_OF, key=len, reverse=True)
                  if s != "m"] + ["(?-i:m)"])  # "15m" is minutes; "10M" is not
_MONTH = (r"(?P<month>Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
          r"|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)\.?")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_SCALE = {"k": 10**3, "thousand": 10**3, "m": 10**6, "million": 10**6, "bn": 10**9, "billion": 10**9}

_CITATION = re.compile(r"\[\s*\d+(?:\s*[,;\u2013-]\s*\d+)*\s*\]")  # [1], [2, 3], [1-3]
_VERSION = re.compile(r"(?<![\w.])(?:[vV](?P<v>\d+(?:\.\d+)+)|(?P<plain>\d+(?:\.\d+){2,}))" + _END)
_IDENTIFIER = re.compile(r"(?<![\w-])[A-Za-z][A-Za-z0-9]*(?:-[A-Za-z0-9]+)+(?![\w-])")
_ISO_DATE = re.compile(r"(?<![\w-])(?P<year>\d{4})-(?P<month>0[1-9]|1[0-2])"  # 2025-06-17 or 2025-06
                       r"(?:-(?P<day>0[1-9]|[12]\d|3[01]))?(?![\w-])")
_NAMED_DATES = tuple(re.compile(p) for p in (
    rf"\b(?P<day>\d{{1,2}})\s+{_MONTH}\s+(?P<year>\d{{4}})\b",  # 17 June 2025
    rf"\b{_MONTH}\s+(?P<day>\d{{1,2}}),?\s+(?P<year>\d{{4}})\b",  # June 17, 2025
    rf"\b{_MONTH},?\s+(?P<year>\d{{4}})\b",  # June 2025
))
_TIME = re.compile(r"(?<![\w:.])(?P<h>[01]?\d|2[0-3]):(?P<m>[0-5]\d)(?::(?P<s>[0-5]\d))?(?![\w:]|\.\d)")
_RATIO = re.compile(rf"(?<![\w.])(?P<a>{_NUMBER})\s+in\s+(?P<b>{_NUMBER}){_END}(?![\s-]*(?:{_UNIT}){_END})",
                    re.IGNORECASE)
_MONEY = re.compile(rf"(?P<cur>[$€£])\s?(?P<n>{_NUMBER})(?:\s?(?P<scale>{'|'.join(_SCALE)})\b)?{_END}",
                    re.IGNORECASE)  # $0.02, $25k, $10 million
_PERCENT = re.compile(rf"(?<![\w.])(?P<n>{_NUMBER})\s?(?:%|percent\b|per\s+cent\b)", re.IGNORECASE)
_QUANTITY = re.compile(rf"(?<![\w.])(?P<n>{_NUMBER})(?:[\s\-\u2011]?(?P<unit>{_UNIT}))?{_END}", re.IGNORECASE)


def canonical_number(numeral: str) -> str:
    """The number a numeral means, written plainly: "10,000" -> "10000", "0.50" -> "0.5", "2.0" -> "2"."""
    return format(Decimal(numeral.replace(",", "")).normalize(), "f")


def _version(match: re.Match[str]) -> Value | None:
    return Value(match["v"] or match["plain"])


def _identifier(match: re.Match[str]) -> Value | None:
    word = match[0]
    if any(c.isdigit() for c in word.rsplit("-", 1)[1]) or (word.isupper() and len(word.split("-")[0]) >= 2):
        return Value(word.upper())  # KOS-4031, eu-west-3, KOS-STD-GB; not "follow-up", "S3-compatible"
    return None


def _date(match: re.Match[str]) -> Value | None:
    month = match["month"]
    month = month if month.isdigit() else f"{_MONTHS.index(month[:3].lower()) + 1:02d}"
    day = match.groupdict().get("day")
    if day is not None and not 1 <= int(day) <= 31:
        return None
    return Value(f"{match['year']}-{month}" + (f"-{int(day):02d}" if day else ""))


def _time(match: re.Match[str]) -> Value | None:
    return Value(f"{int(match['h']):02d}:{match['m']}" + (f":{match['s']}" if match["s"] else ""))


def _ratio(match: re.Match[str]) -> Value | None:
    return Value(f"{canonical_number(match['a'])} in {canonical_number(match['b'])}")


def _money(match: re.Match[str]) -> Value | None:
    amount = Decimal(canonical_number(match["n"])) * _SCALE.get((match["scale"] or "").lower(), 1)
    number = canonical_number(str(amount))
    return Value(match["cur"] + number, number)


def _percent(match: re.Match[str]) -> Value | None:
    number = canonical_number(match["n"])
    return Value(number + "%", number)


def _quantity(match: re.Match[str]) -> Value | None:
    number = canonical_number(match["n"])
    if match["unit"]:
        return Value(f"{number} {_UNIT_OF[normalize_whitespace(match['unit']).casefold()]}", number)
    return None if len(number) == 1 else Value(number, number)  # a bare digit: a step, list item or ordinal


# Read in this order; each value read is blanked out, so "2025" in "KOS-2025-7" is not read again as a number.
_READERS = ((_VERSION, _version), (_IDENTIFIER, _identifier), (_ISO_DATE, _date),
            *((pattern, _date) for pattern in _NAMED_DATES), (_TIME, _time), (_RATIO, _ratio),
            (_MONEY, _money), (_PERCENT, _percent), (_QUANTITY, _quantity))


def extract_values(text: str) -> tuple[Value, ...]:
    """The distinct values a text states, canonical, in order of first appearance.

    Read: versions ("v1.9.0" -> "1.9.0"), identifiers ("kos-4031" -> "KOS-4031"), dates ("June 17, 2025"
    -> "2025-06-17"), times ("9:00" -> "09:00"), ratios ("1 in 40,000" -> "1 in 40000"), money ("$0.020"
    -> "$0.02"), percentages ("25 percent" -> "25%"), numbers with a unit ("90-day", "90d" -> "90 day";
    "5GiB" -> "5 GiB", never "5 GB") and bare numbers ("10,000" -> "10000"). Numbers compare by value,
    so a two-part version reads as a decimal ("2.10" -> "2.1"); three parts are a version ("4.3.0").
    Not values: [n] citation markers, bare single digits ("step 1", "3 retries": too common to ground
    anything), and any number that is part of a longer word, number or value ("4" in "64", "go1.24").
    "Answer [1]: 90 days, 90d, 3 tries" -> (Value("90 day", "90"),)
    """
    found: list[tuple[int, Value]] = []

    def read_and_blank(match: re.Match[str]) -> str:
        value = read(match)
        if value is None:
            return match[0]
        found.append((match.start(), value))
        return " " * len(match[0])  # same length, so later offsets still point into the original text

    text = _CITATION.sub(lambda match: " " * len(match[0]), text)
    for pattern, read in _READERS:
        text = pattern.sub(read_and_blank, text)
    return tuple(dict.fromkeys(value for _, value in sorted(found)))
