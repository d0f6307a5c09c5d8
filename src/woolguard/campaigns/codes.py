"""One-item-one-code (一物一码): signed codes for product packaging, verified without a database lookup.

A code carries its batch id (20 bits) and serial (30 bits) and a 50-bit keyed MAC
(HMAC-SHA256, truncated) over them, written in Crockford base32 as 20 characters in groups of five
(``7K3QD-0XW5M-HB2RT-9ZC4E``). The batch and serial are masked with a keystream derived from the MAC
(a synthetic-IV construction), so codes look random and do not reveal how many were printed.

- Unguessable: a made-up or altered code is accepted with probability 2^-50 per try.
- Mistyped codes (a wrong, missing or swapped character) fail the MAC; Crockford decoding forgives case,
  ``I``/``L`` for ``1``, ``O`` for ``0``, hyphens and spaces.
- Keys are per tenant, derived from the deployment secret (``WOOLGUARD_SECRET``), so one brand's codes
  are refused by another's.
- Nothing is stored per code at generation: 10 M codes are one ``code_batches`` row; a code gets a row
  (``used_codes``) only when it is first scanned. Codes can be re-generated for reprinting from
  (key, batch, serial).
"""

from __future__ import annotations

import csv
import hashlib
import hmac
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
_DECODE = {c: i for i, c in enumerate(ALPHABET)}
_DECODE.update({c.lower(): i for c, i in list(_DECODE.items())})
_DECODE.update({"O": 0, "o": 0, "I": 1, "i": 1, "L": 1, "l": 1})

BATCH_BITS = 20
SERIAL_BITS = 30
MAC_BITS = 50
PAYLOAD_BITS = BATCH_BITS + SERIAL_BITS
CODE_CHARS = (PAYLOAD_BITS + MAC_BITS) // 5  # 20
MAX_BATCH = (1 << BATCH_BITS) - 1
MAX_SERIAL = (1 << SERIAL_BITS) - 1
_MASK50 = (1 << 50) - 1


class CodeError(ValueError):
    """A code that is malformed or fails its signature (forged, altered or mistyped)."""


@dataclass(frozen=True, slots=True)
class CodeInfo:
    code: str  # canonical form: 20 characters, upper case, no hyphens
    batch_id: int
    serial: int


def tenant_key(secret: bytes, tenant: str) -> bytes:
    """The tenant's code key, derived from the deployment secret."""
    return hmac.new(secret, b"woolguard-codes\x00" + tenant.encode(), hashlib.sha256).digest()


class CodeSigner:
    """Makes and checks one tenant's codes."""

    def __init__(self, key: bytes):
        self._mac = hmac.new(key, b"mac", hashlib.sha256)
        self._mask = hmac.new(key, b"mask", hashlib.sha256)

    @classmethod
    def for_tenant(cls, secret: bytes, tenant: str) -> CodeSigner:
        return cls(tenant_key(secret, tenant))

    def _tag(self, payload: int) -> int:
        h = self._mac.copy()
        h.update(payload.to_bytes(7, "big"))
        return int.from_bytes(h.digest()[:7], "big") >> 6  # top 50 bits

    def _keystream(self, tag: int) -> int:
        h = self._mask.copy()
        h.update(tag.to_bytes(7, "big"))
        return int.from_bytes(h.digest()[:7], "big") >> 6

    def make(self, batch_id: int, serial: int) -> str:
        """The canonical code (20 characters) for ``serial`` of ``batch_id``."""
        if not 0 <= batch_id <= MAX_BATCH:
            raise ValueError(f"batch id {batch_id} outside 0..{MAX_BATCH}")
        if not 0 <= serial <= MAX_SERIAL:
            raise ValueError(f"serial {serial} outside 0..{MAX_SERIAL}")
        payload = (batch_id << SERIAL_BITS) | serial
        tag = self._tag(payload)
        n = ((payload ^ self._keystream(tag)) << MAC_BITS) | tag
        return _encode(n)

    def verify(self, text: str) -> CodeInfo:
        """Decode and check a code as typed or scanned; raises :class:`CodeError` if it is not genuine."""
        n = _decode(text)
        tag = n & _MASK50
        payload = (n >> MAC_BITS) ^ self._keystream(tag)
        if not hmac.compare_digest(self._tag(payload).to_bytes(7, "big"), tag.to_bytes(7, "big")):
            raise CodeError("code signature does not match: forged, altered or mistyped")
        return CodeInfo(_encode(n), payload >> SERIAL_BITS, payload & MAX_SERIAL)

    def check(self, text: str) -> CodeInfo | None:
        try:
            return self.verify(text)
        except CodeError:
            return None

    def batch(self, batch_id: int, count: int, first: int = 0) -> Iterator[tuple[int, str]]:
        """``(serial, code)`` for ``count`` serials from ``first``."""
        if first < 0 or count < 0 or first + count - 1 > MAX_SERIAL:
            raise ValueError(f"serials {first}..{first + count - 1} outside 0..{MAX_SERIAL}")
        for serial in range(first, first + count):
            yield serial, self.make(batch_id, serial)


def _encode(n: int) -> str:
    chars = []
    for _ in range(CODE_CHARS):
        chars.append(ALPHABET[n & 31])
        n >>= 5
    return "".join(reversed(chars))


def _decode(text: str) -> int:
    n = 0
    count = 0
    for ch in text:
        if ch in "- ":
            continue
        v = _DECODE.get(ch)
        if v is None:
            raise CodeError(f"character {ch!r} is not in the code alphabet")
        n = (n << 5) | v
        count += 1
    if count != CODE_CHARS:
        raise CodeError(f"a code has {CODE_CHARS} characters, this one {count}")
    return n


def pretty(code: str) -> str:
    """``XXXXX-XXXXX-XXXXX-XXXXX`` for printing."""
    return "-".join(code[i:i + 5] for i in range(0, len(code), 5))


# ---------------------------------------------------------------------------------------------------
# Export for printing

CSV_FIELDS = ("code", "printed", "batch_id", "serial", "product", "line", "url")


def write_csv(out: IO[str], codes: Iterable[tuple[int, str]], batch_id: int, product: str = "", line: str = "",
              url_template: str | None = None) -> int:
    """One row per code (``printed`` is the hyphenated form); ``url_template`` may use ``{code}``."""
    w = csv.writer(out)
    w.writerow(CSV_FIELDS)
    n = 0
    for serial, code in codes:
        url = url_template.format(code=code) if url_template else ""
        w.writerow((code, pretty(code), batch_id, serial, product, line, url))
        n += 1
    return n


def write_qr(directory: Path, codes: Iterable[tuple[int, str]], batch_id: int, url_template: str | None = None,
             kind: str = "png", scale: int = 4) -> int:
    """One QR image per code, ``<batch>-<serial>.<kind>`` (png or svg), carrying the URL or the code."""
    import segno

    directory.mkdir(parents=True, exist_ok=True)
    n = 0
    for serial, code in codes:
        content = url_template.format(code=code) if url_template else code
        segno.make(content, error="m").save(str(directory / f"{batch_id}-{serial:09d}.{kind}"), scale=scale)
        n += 1
    return n
