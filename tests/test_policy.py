"""Policies: loading refuses broken documents whole, naming the rule and the position."""

from __future__ import annotations

import pytest

from woolguard.engine import Engine, default_policy_text
from woolguard.events import Account, Device, Event, EventKind, Outcome
from woolguard.rules.lists import ListEntry, Lists
from woolguard.rules.policy import PolicyError

BASE = """
id: t
version: 2
outcomes: {2: {outcome: verify, challenge: sms}, 3: review}
rules:
  - id: emu
    when: dev_emulator
    score: 45
    reason: device.emulator
  - id: many
    when: dev_accounts_1d >= 2
    score: 30
    reason: device.multi_account
    challenge: face
  - id: quiet
    when: kind == 'claim'
    score: 50
    reason: account.fresh
    mode: shadow
"""


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def load(engine: Engine, text: str):
    return engine.load_policy_text(text, "test.yaml")


def test_valid_policy_loads(engine: Engine) -> None:
    p = load(engine, BASE)
    assert p.ref == "t@2"
    assert [r.id for r in p.rules] == ["emu", "many", "quiet"]
    assert p.rules[2].shadow


def test_shipped_default_policy_is_valid(engine: Engine) -> None:
    p = load(engine, default_policy_text())
    assert p.id == "default" and len(p.rules) > 20


@pytest.mark.parametrize(
    ("body", "rule", "fragment"),
    [
        ("  - id: bad\n    when: dev_emulator &&\n    reason: device.emulator\n", "bad", "syntax"),
        ("  - id: bad\n    when: no_such_feature > 3\n    reason: device.emulator\n", "bad", "unknown feature"),
        ("  - id: bad\n    when: tier + 1\n    reason: device.emulator\n", "bad", "true or false"),
        ("  - id: bad\n    when: kind > 3\n    reason: device.emulator\n", "bad", "does not evaluate"),
        ("  - id: bad\n    when: dev_emulator\n    reason: no.such.code\n", "bad", "reason code"),
        ("  - id: bad\n    when: dev_emulator\n    reason: device.emulator\n    score: 900\n", "bad", "score"),
        ("  - id: bad\n    when: dev_emulator\n    reason: device.emulator\n    kinds: [claims]\n", "bad", "kinds"),
        ("  - id: bad\n    when: dev_emulator\n    reason: device.emulator\n    mode: maybe\n", "bad", "mode"),
        ("  - id: bad\n    when: dev_emulator\n    reason: device.emulator\n    review: maybe\n", "bad", "review"),
        ("  - id: emu\n    when: dev_emulator\n    reason: device.emulator\n", "emu", "duplicate"),
        ("  - id: bad\n    when: dev_emulator\n    reason: device.emulator\n    colour: red\n", "bad", "unknown keys"),
    ],
)
def test_broken_rule_refuses_whole_policy(engine: Engine, body: str, rule: str, fragment: str) -> None:
    with pytest.raises(PolicyError) as info:
        load(engine, BASE + body)
    err = info.value
    assert err.rule == rule
    assert fragment in str(err)
    assert err.line is not None and err.line > 5  # the line of the broken rule in the file


def test_syntax_error_names_the_column(engine: Engine) -> None:
    with pytest.raises(PolicyError) as info:
        load(engine, BASE + "  - id: bad\n    when: dev_emulator && (tier > 1\n    reason: device.emulator\n")
    assert info.value.position is not None and "column" in info.value.position


@pytest.mark.parametrize(
    "doc",
    [
        "id: t\nrules: {}\n",
        "rules: []\n",
        "id: t\nthresholds: [50, 40, 60, 80]\nrules: []\n",
        "id: t\noutcomes: {2: {outcome: verify, challenge: telepathy}}\nrules: []\n",
        "id: t\noutcomes: {7: pass}\nrules: []\n",
        "id: t\nfailure_mode: sideways\nrules: []\n",
        "id: t\nrules: [\n",
        "- just a list\n",
    ],
)
def test_broken_documents_are_refused(engine: Engine, doc: str) -> None:
    with pytest.raises(PolicyError):
        load(engine, doc)


def _claim(i: int, emulator: bool = False, device: str = "d1", tier: int = 0) -> Event:
    return Event(event_id=f"e{i}", kind=EventKind.CLAIM, ts=1_800_000_000_000 + i * 1000,
                 account=Account(id=f"a{i}", tier=tier), device=Device(id=device, emulator=emulator))


def test_scores_levels_challenges_and_shadow_rules() -> None:
    engine = Engine()
    engine.set_policy(load(engine, BASE))
    d = engine.decide(_claim(1, emulator=True))
    assert (d.level, d.outcome, d.challenge) == (2, Outcome.VERIFY, "sms")
    codes = {r.rule: r for r in d.reasons}
    assert codes["emu"].values == {"dev_emulator": True}
    assert codes["quiet"].shadow and codes["quiet"].score == 0  # logged, not scored
    assert d.score == 45
    # a second account on the device adds 30 and asks for a face check
    d2 = engine.decide(_claim(2, emulator=True))
    assert d2.score == 75 and d2.level == 3 and d2.outcome == Outcome.REVIEW
    d3 = engine.decide(_claim(3, emulator=False, device="d9"))
    assert d3.outcome == Outcome.PASS and d3.level == 0


def test_tier_relief_lowers_the_level() -> None:
    engine = Engine()
    engine.set_policy(load(engine, BASE.replace("version: 2", "version: 2\ntier_relief: {4: 30}")))
    assert engine.decide(_claim(1, emulator=True, tier=0)).level == 2
    assert engine.decide(_claim(2, emulator=True, tier=4, device="other")).level == 0


def test_lists_block_allow_review_with_scope_and_expiry() -> None:
    ts0 = 1_800_000_000_000
    lists = Lists([
        ListEntry("block", "device", "bad-dev", reason="confirmed farm"),
        ListEntry("allow", "account", "vip", campaign_id="c1"),
        ListEntry("review", "account", "watch", expires_at=ts0 + 5_000),
    ])
    engine = Engine(lists=lists)

    def ev(i: int, acct: str, dev: str, camp: str | None = "c1") -> Event:
        return Event(event_id=f"l{i}", kind=EventKind.CLAIM, ts=ts0 + i * 1000, campaign_id=camp,
                     account=Account(id=acct), device=Device(id=dev))

    blocked = engine.decide(ev(1, "x", "bad-dev"))
    assert blocked.outcome == Outcome.REJECT and blocked.level == 4
    assert any(r.code == "list.block" for r in blocked.reasons)
    assert engine.decide(ev(2, "vip", "d2")).outcome == Outcome.PASS
    assert engine.decide(ev(3, "watch", "d3")).outcome == Outcome.REVIEW
    assert engine.decide(ev(9, "watch", "d3")).outcome == Outcome.PASS  # expired
    # the allow entry is scoped to campaign c1
    allowed_elsewhere = engine.decide(ev(10, "vip", "bad-dev", camp="c2"))
    assert allowed_elsewhere.outcome == Outcome.REJECT


def test_retried_event_returns_the_first_decision_and_counts_once() -> None:
    engine = Engine()
    first = engine.decide(_claim(1))
    again = engine.decide(_claim(1))
    assert again is first
    nxt = engine.decide(Event(event_id="other", kind=EventKind.CLAIM, ts=1_800_000_005_000,
                              account=Account(id="a1"), device=Device(id="d1")))
    assert nxt.features["dev_payouts_10m"] == 2  # the retry was not counted


def test_phone_numbers_never_leave_normalisation_in_clear() -> None:
    engine = Engine(secret=b"k")
    ev = Event(event_id="p1", kind=EventKind.REGISTER, ts=1_800_000_000_000, account=Account(id="a"),
               phone="+86 170 5123 4567")
    n = engine.normalise(ev)
    assert n.phone is None and n.phone_hash and "17051234567" not in n.phone_hash
    assert n.phone_prefix == "1705123" and n.phone_block and n.phone_block.startswith("k:")
    assert engine.normalise(n) == n  # idempotent
    d = engine.decide(n)
    assert d.features["phone_virtual"] is True
    assert Engine(secret=b"other").normalise(ev).phone_hash != n.phone_hash  # keyed


def test_a_campaign_can_have_its_own_policy() -> None:
    engine = Engine()
    engine.set_policy(load(engine, BASE), campaign_id="strict-campaign")

    def ev(i: int, camp: str) -> Event:
        return Event(event_id=f"c{i}", kind=EventKind.CLAIM, ts=1_800_000_000_000 + i, campaign_id=camp,
                     account=Account(id=f"a{i}"), device=Device(id=f"d{i}", emulator=True))

    assert engine.decide(ev(1, "strict-campaign")).policy == "t@2"
    other = engine.decide(ev(2, "other"))
    assert other.policy == "default@1"
    assert other.outcome == Outcome.VERIFY and other.challenge == "face"  # the default policy's emulator rule


def test_policy_level_kinds_scope_every_rule(engine: Engine) -> None:
    p = load(engine, BASE.replace("version: 2", "version: 2\nkinds: [claim, scan]"))
    assert all(r.kinds == {EventKind.CLAIM, EventKind.SCAN} for r in p.rules)
    assert p.evaluate(EventKind.LOGIN, {**engine.neutral_features(), "dev_emulator": True}) == ([], [])
    with pytest.raises(PolicyError, match="kinds"):
        load(engine, BASE.replace("version: 2", "version: 2\nkinds: [logon]"))


def test_refusals_carry_a_shopper_message_with_the_reference() -> None:
    engine = Engine()
    engine.set_policy(load(engine, BASE))
    d = engine.decide(_claim(1, emulator=True))
    assert d.outcome == Outcome.VERIFY and "security check" in d.message["en"] and d.message["zh"]
    blocked = Engine(lists=Lists([ListEntry("block", "device", "d1")])).decide(_claim(2))
    assert blocked.decision_id in blocked.message["en"] and blocked.decision_id in blocked.message["zh"]
    assert "emulator" not in blocked.message["en"].lower()  # nothing a ring could learn from
    assert engine.decide(_claim(3, device="clean")).message == {}


def test_a_review_rule_holds_what_would_pass_or_verify_for_an_analyst() -> None:
    held = BASE + """  - id: hold
    when: dev_accounts_1d >= 1 && !dev_emulator
    review: true
    reason: gang.member
  - id: hold_quietly
    when: dev_emulator
    review: true
    reason: gang.member
    mode: shadow
"""
    engine = Engine()
    engine.set_policy(load(engine, held))
    d = engine.decide(_claim(1, device="fresh"))  # score 0: would pass
    assert (d.level, d.outcome, d.challenge) == (0, Outcome.REVIEW, None)
    assert any(r.rule == "hold" for r in d.reasons) and d.message is not None
    shadow = engine.decide(_claim(2, emulator=True, device="emu-1"))  # a shadow review rule holds nothing
    assert shadow.outcome == Outcome.VERIFY
    engine.lists = Lists([ListEntry("allow", "account", "a3")])
    assert engine.decide(_claim(3, device="fresh-3")).outcome == Outcome.PASS  # an allow entry wins
    engine.lists = Lists([ListEntry("block", "account", "a4")])
    assert engine.decide(_claim(4, device="fresh-4")).outcome == Outcome.REJECT  # a reject stays a reject


def test_reason_codes_doc_is_the_generated_table() -> None:
    """``docs/reasons.md`` holds ``woolguard reasons --markdown``'s table: a new code is documented."""
    from pathlib import Path

    from woolguard.reasons import markdown_table

    doc = Path(__file__).resolve().parent.parent / "docs" / "reasons.md"
    assert markdown_table() in doc.read_text("utf-8")
