"""Phone numbers: validity, operator segment (virtual operator, IoT, data card), and keyed hashing.

A clear number never goes past :meth:`PhoneBook.facts`: it becomes a keyed hash (keyed BLAKE2b with the
deployment's secret), the first 7 digits (segment + region block, enough to know the operator kind)
and a keyed hash of its block of 100 numbers (modem pools hold consecutive numbers). A caller that hashes
numbers itself sends ``phone_hash`` (re-keyed here) and, ideally, ``phone_prefix``.
"""

from __future__ import annotations

import csv
import hashlib
from functools import lru_cache
from importlib import resources

import msgspec
import phonenumbers

KIND_MNO = "mno"
KIND_MVNO = "mvno"
KIND_IOT = "iot"
KIND_DATA = "data"
KIND_SATELLITE = "satellite"


class PhoneFacts(msgspec.Struct, frozen=True, gc=False):  # cached per number: kept out of the cyclic GC's walks
    hash: str
    prefix: str | None
    block: str | None
    valid: bool


class PhoneClass(msgspec.Struct, frozen=True, gc=False):
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


def _mainland_mobile(digits: str) -> str | None:
    """The 11-digit national number of a mainland mobile written plainly, +86 or 0086; else None."""
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    if len(digits) == 11 and digits[0] == "1" and digits.isdigit():
        return digits
    return None


class PhoneBook:
    """Classifies prefixes and hashes numbers with the deployment's key."""

    def __init__(self, secret: bytes, segments: dict[str, tuple[str, str]] | None = None):
        self._secret = secret
        self._key = secret if len(secret) <= 64 else hashlib.sha256(secret).digest()
        self._segments = segments if segments is not None else load_segments()
        self._lengths = sorted({len(p) for p in self._segments}, reverse=True)
        self.facts = lru_cache(maxsize=1 << 16)(self._facts)
        self.classify = lru_cache(maxsize=1 << 14)(self._classify)

    def keyed(self, text: str) -> str:
        """A keyed hash (BLAKE2b in keyed mode, a MAC): stable for one deployment secret, useless without it."""
        return hashlib.blake2b(text.encode(), key=self._key, digest_size=16).hexdigest()

    def _facts(self, number: str) -> PhoneFacts:
        digits = number if number.isdigit() else "".join(ch for ch in number if ch.isdigit() or ch == "+")
        national = _mainland_mobile(digits)
        if national is not None and self._known_segment(national):
            # The common case, answered without phonenumbers' parser (~45 µs): an 11-digit mainland number in
            # a segment of the table. The table is authoritative for what it lists (IoT and data-card numbers
            # included, which phonenumbers' metadata calls invalid); phonenumbers judges everything else.
            return self._mainland(national, True)
        try:
            parsed = phonenumbers.parse(digits, "CN")
            valid = phonenumbers.is_valid_number(parsed)
        except phonenumbers.NumberParseException:
            return PhoneFacts(self.keyed("n:" + digits), "0", None, False)
        national = str(parsed.national_number)
        if parsed.country_code == 86:
            return self._mainland(national, valid or (len(national) == 11 and self._known_segment(national)))
        # Foreign numbers keep their country code as the prefix; no segment table applies.
        return PhoneFacts(self.keyed("n:+" + str(parsed.country_code) + national), "+" + str(parsed.country_code),
                          None, valid)

    def _mainland(self, national: str, valid: bool) -> PhoneFacts:
        # An invalid number's prefix starts with 0, which no mobile segment does: it classifies as invalid.
        prefix = national[:7] if valid else "0" + national[:6]
        block = self.keyed("b:" + national[:-2]) if valid and len(national) == 11 else None
        return PhoneFacts(self.keyed("n:" + national), prefix, block, valid)

    def _known_segment(self, national: str) -> bool:
        segments = self._segments
        return any(national[:n] in segments for n in self._lengths)

    def _classify(self, prefix: str | None) -> PhoneClass:
        if not prefix or prefix.startswith("+"):
            return PhoneClass(None, None)
        for n in self._lengths:
            hit = self._segments.get(prefix[:n])
            if hit is not None:
                return PhoneClass(hit[1], hit[0])
        return PhoneClass(None, None)
