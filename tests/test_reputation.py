"""Reputation: phone segments and validity, IP lists, device-trait consistency."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from woolguard.reputation.device import trait_mismatch
from woolguard.reputation.network import IpBook, parse_cidrs
from woolguard.reputation.phone import KIND_DATA, KIND_IOT, KIND_MNO, KIND_MVNO, PhoneBook, load_segments

BOOK = PhoneBook(b"test-secret")


@pytest.mark.parametrize(
    ("number", "kind", "valid"),
    [
        ("13812345678", KIND_MNO, True),
        ("+86 138 1234 5678", KIND_MNO, True),
        ("0086-13812345678", KIND_MNO, True),
        ("17051234567", KIND_MVNO, True),
        ("16512345678", KIND_MVNO, True),
        ("14812345678", KIND_IOT, True),
        ("14712345678", KIND_DATA, True),
        ("12345678901", None, False),  # no such segment
        ("1381234567", None, False),  # one digit short
        ("not a number", None, False),
    ],
)
def test_phone_classification(number: str, kind: str | None, valid: bool) -> None:
    facts = BOOK.facts(number)
    assert facts.valid is valid
    assert BOOK.classify(facts.prefix).kind == kind
    assert number.replace(" ", "") not in facts.hash


def test_foreign_numbers_keep_their_country_code() -> None:
    facts = BOOK.facts("+1 202 555 0123")
    assert facts.prefix == "+1" and facts.block is None


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(load_segments())), st.integers(min_value=0, max_value=10**8))
def test_fast_path_agrees_with_the_parser(segment: str, tail: int) -> None:
    number = (segment + f"{tail:08d}")[:11].ljust(11, "0")
    fast = BOOK._facts(number)
    parsed = BOOK._facts("+86 " + number[:3] + " " + number[3:])  # a spelling that takes the same fast path
    slow = BOOK._facts("(86) " + number)  # parenthesised: goes through phonenumbers
    assert fast == parsed == slow


def test_numbers_in_one_block_share_the_block_hash() -> None:
    a, b, c = BOOK.facts("13812345600"), BOOK.facts("13812345699"), BOOK.facts("13812345700")
    assert a.block == b.block != c.block
    assert a.hash != b.hash


def test_ip_lists_and_scope() -> None:
    book = IpBook({"datacenter": "47.96.0.0/11\n# comment\n", "bad": "203.0.113.7/32\n2001:db8::/32"})
    assert book.facts("47.100.1.2").lists == {"datacenter"}
    assert book.facts("47.128.0.1").lists == frozenset()
    assert book.facts("203.0.113.7").lists == {"bad"}
    assert book.facts("2001:db8::1").lists == {"bad"}
    assert book.facts("47.100.1.2").prefix == "47.100.1"
    assert book.facts("192.168.1.5").public is False
    assert book.facts("999.1.1.1").valid is False


def test_cidr_errors_name_the_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        parse_cidrs("10.0.0.0/8\n10.0.0.0/33\n", "mylist")


@pytest.mark.parametrize(
    ("model", "os", "version", "ua", "mismatch"),
    [
        ("iPhone15,2", "ios", "18.1", "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X)", False),
        ("iPhone15,2", "android", "14", None, True),
        ("M2006C3LC", "android", "13", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)", True),
        ("M2006C3LC", "android", "13", "Mozilla/5.0 (Linux; Android 13; M2006C3LC)", False),
        ("M2006C3LC", "android", "3", None, True),  # no such Android in current traffic
        (None, None, None, None, False),
    ],
)
def test_trait_mismatch(model: str | None, os: str | None, version: str | None, ua: str | None,
                        mismatch: bool) -> None:
    assert trait_mismatch(model, os, version, ua) is mismatch


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.integers(min_value=0, max_value=2**32 - 1),
                 st.sampled_from(["192.0.0.9", "192.0.0.10", "192.0.0.8", "100.64.0.1", "224.0.0.1", "10.1.2.3",
                                  "172.31.255.255", "8.8.8.8", "255.255.255.255", "198.19.0.1"])))
def test_fast_ipv4_path_agrees_with_ipaddress(addr: int | str) -> None:
    import ipaddress

    text = str(ipaddress.ip_address(addr))
    facts = IpBook({}).facts(text)
    assert facts.valid and facts.public == ipaddress.ip_address(text).is_global
    assert facts.prefix == text.rsplit(".", 1)[0]


@pytest.mark.parametrize("text", ["1.2.3", "01.2.3.4", "1.2.3.256", "1.2.3.4.5", "１.2.3.4", "a.b.c.d", ""])
def test_odd_ipv4_spellings_are_not_taken_by_the_fast_path(text: str) -> None:
    import ipaddress

    try:
        ipaddress.ip_address(text)
        expected = True
    except ValueError:
        expected = False
    assert IpBook({}).facts(text).valid is expected
