"""What a service worker keeps for long (decisions in its buffer, reputation caches) stays out of the cyclic GC."""

from __future__ import annotations

import gc

from woolguard.engine import Engine
from woolguard.events import decode_event
from woolguard.reputation.network import IpBook
from woolguard.reputation.phone import PhoneBook


def test_events_and_decisions_are_not_tracked_by_the_cyclic_gc() -> None:
    ev = decode_event(b'{"event_id":"e1","kind":"claim","ts":1767225600000,"account":{"id":"a1"},'
                      b'"device":{"id":"d1","emulator":true},"ip":"36.1.2.3","campaign_id":"c"}')
    assert not gc.is_tracked(ev) and not gc.is_tracked(ev.account) and not gc.is_tracked(ev.device)
    d = Engine().decide(ev)
    assert d.reasons, "an emulator should give a reason"
    assert not gc.is_tracked(d)
    assert not any(gc.is_tracked(r) for r in d.reasons)


def test_reputation_caches_hold_untracked_values_with_shared_list_sets() -> None:
    ips = IpBook()
    a, b = ips.facts("36.1.2.3"), ips.facts("36.1.2.4")
    assert not gc.is_tracked(a)
    assert a.lists is b.lists  # one set per combination of lists, not one per address
    phones = PhoneBook(b"k" * 32)
    facts = phones.facts("13800138000")
    assert not gc.is_tracked(facts) and facts.valid
    assert not gc.is_tracked(phones.classify(facts.prefix))
