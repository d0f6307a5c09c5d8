"""Phone numbers: validity, operator segment (virtual operator, IoT, data card), and keyed hashing.

A clear number never goes past :func:`normalise_phone`: it becomes a keyed hash (HMAC-SHA256 with the
deployment's secret), the first 7 digits (segment + region block, enough to know the operator kind)
and a keyed hash of its block of 100 numbers (modem pools hold consecutive numbers). A caller that hashes
numbers itself sends ``phone_hash`` (re-keyed here) and, ideally, ``phone_prefix``.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import phonenumbers

KIND_MNO = "mno"
KIND_MVNO = "mvno"
KIND_IOT = "iot"
KIND_DATA = "data"
KIND_SATELLITE = "satellite"


@dataclass(frozen=True, slots=True)
class PhoneFacts:
    hash: str
    prefix: str | None
    block: str | None
    valid: bool


@dataclass(frozen=True, slots=True)
class PhoneClass:
    kind: str | None  # None: unknown segment
    operator: str | None


def load_segments(path: str | None = None) -> dict[str, tuple[str, str]]:
    """prefix -> (operator, kind) from the segment table shipped in the repo (or ``path``)."""
    if path is None:
        text = resources.files("woolguard.data").joinpath("cn_phone_segments.csv").read_text("utf-8")
    else:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    rows = [line for line in text.splitlines() if line and not line.startswith("#")]
    table: dict[str, tuple[str, str]] = {}
    for n, row in enumerate(csv.DictReader(rows), start=2):
        prefix, operator, kind = row.get("prefix"), row.get("operator"), row.get("kind")
        if not prefix or not prefix.isdigit() or not operator or not kind:
            raise ValueError(f"phone segment table, row {n}: expected prefix,operator,kind")
        table[prefix] = (operator, kind)
    return table


class PhoneBook:
    """Classifies prefixes and hashes numbers with the deployment's key."""

    def __init__(self, secret: bytes, segments: dict[str, tuple[str, str]] | None = None):
        self._secret = secret
        self._segments = segments if segments is not None else load_segments()
        self._lengths = sorted({len(p) for p in self._segments}, reverse=True)
        self.facts = lru_cache(maxsize=1 << 16)(self._facts)
        self.classify = lru_cache(maxsize=1 << 14)(self._classify)

    def keyed(self, text: str) -> str:
        return hmac.new(self._secret, text.encode(), hashlib.sha256).hexdigest()[:32]

    def _facts(self, number: str) -> PhoneFacts:
        digits = "".join(ch for ch in number if ch.isdigit() or ch == "+")
        try:
            parsed = phonenumbers.parse(digits, "CN")
            valid = phonenumbers.is_valid_number(parsed)
            national = str(parsed.national_number)
            region = phonenumbers.region_code_for_number(parsed)
        except phonenumbers.NumberParseException:
            return PhoneFacts(self.keyed("n:" + digits), None, None, False)
        if region != "CN":
            # Foreign numbers keep their country code as the prefix; no segment table applies.
            return PhoneFacts(self.keyed("n:+" + str(parsed.country_code) + national),
                              "+" + str(parsed.country_code), None, valid)
        return PhoneFacts(self.keyed("n:" + national), national[:7] if len(national) >= 7 else national,
                          self.keyed("b:" + national[:-2]) if len(national) == 11 else None, valid)

    def _classify(self, prefix: str | None) -> PhoneClass:
        if not prefix or prefix.startswith("+"):
            return PhoneClass(None, None)
        for n in self._lengths:
            hit = self._segments.get(prefix[:n])
            if hit is not None:
                return PhoneClass(hit[1], hit[0])
        return PhoneClass(None, None)
