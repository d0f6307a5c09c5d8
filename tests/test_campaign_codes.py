"""Signed one-item-one-code codes: round trips, forgeries, alterations, typos, other tenants; export."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from woolguard.campaigns.codes import (
    ALPHABET,
    CODE_CHARS,
    MAX_BATCH,
    MAX_SERIAL,
    CodeError,
    CodeSigner,
    pretty,
    write_csv,
    write_qr,
)

SIGNER = CodeSigner.for_tenant(b"secret", "acme")
OTHER = CodeSigner.for_tenant(b"secret", "globex")

batches = st.integers(0, MAX_BATCH)
serials = st.integers(0, MAX_SERIAL)


@given(batches, serials)
def test_round_trip(batch: int, serial: int) -> None:
    code = SIGNER.make(batch, serial)
    assert len(code) == CODE_CHARS and set(code) <= set(ALPHABET)
    info = SIGNER.verify(code)
    assert (info.batch_id, info.serial, info.code) == (batch, serial, code)
    # as a person may type it: lower case, hyphens, O for 0, I/L for 1
    typed = pretty(code).lower().replace("0", "o").replace("1", "l")
    assert SIGNER.verify(typed) == info
    # another tenant's key refuses it
    assert OTHER.check(code) is None


@settings(max_examples=300)
@given(batches, serials, st.integers(0, CODE_CHARS - 1), st.integers(1, 31))
def test_one_altered_character_is_refused(batch: int, serial: int, pos: int, delta: int) -> None:
    code = SIGNER.make(batch, serial)
    altered = code[:pos] + ALPHABET[(ALPHABET.index(code[pos]) + delta) % 32] + code[pos + 1:]
    assert SIGNER.check(altered) is None


@given(batches, serials, st.integers(0, CODE_CHARS - 2))
def test_swapped_neighbours_are_refused(batch: int, serial: int, pos: int) -> None:
    code = SIGNER.make(batch, serial)
    if code[pos] == code[pos + 1]:
        return
    swapped = code[:pos] + code[pos + 1] + code[pos] + code[pos + 2:]
    assert SIGNER.check(swapped) is None


@settings(max_examples=500)
@given(st.text(alphabet=ALPHABET, min_size=CODE_CHARS, max_size=CODE_CHARS))
def test_made_up_codes_are_refused(text: str) -> None:
    # 2^-50 per guess: hypothesis will not find a valid one
    assert SIGNER.check(text) is None


@given(st.text(max_size=40))
def test_garbage_never_crashes(text: str) -> None:
    try:
        SIGNER.verify(text)
    except CodeError:
        pass


def test_malformed_inputs_name_the_problem() -> None:
    with pytest.raises(CodeError, match="characters"):
        SIGNER.verify("ABC")
    with pytest.raises(CodeError, match="alphabet"):
        SIGNER.verify("U" * CODE_CHARS)
    with pytest.raises(ValueError):
        SIGNER.make(MAX_BATCH + 1, 0)


def test_codes_of_a_batch_are_distinct_and_unordered() -> None:
    codes = [c for _, c in SIGNER.batch(7, 5000)]
    assert len(set(codes)) == 5000
    assert codes != sorted(codes)
    # no shared prefix: the serial is masked
    assert len({c[:4] for c in codes}) > 4000


def test_csv_and_qr_export(tmp_path: Path) -> None:
    buf = io.StringIO()
    n = write_csv(buf, SIGNER.batch(3, 5), 3, "cola 500ml", "L2", "https://x.cn/s/{code}")
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert n == 5 and len(rows) == 5
    assert rows[0]["url"] == f"https://x.cn/s/{rows[0]['code']}" and rows[4]["serial"] == "4"
    assert SIGNER.verify(rows[2]["printed"]).serial == 2
    assert write_qr(tmp_path / "qr", SIGNER.batch(3, 3), 3) == 3
    files = sorted((tmp_path / "qr").iterdir())
    assert [f.name for f in files] == ["3-000000000.png", "3-000000001.png", "3-000000002.png"]
    assert files[0].read_bytes()[:4] == b"\x89PNG"
