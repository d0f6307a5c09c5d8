"""``Engine.decide``: the one hot path from an event to a decision.

normalise (phone → keyed hash) → entities → reputation facts → windowed features (state backend) →
lists → CEL rules → score → level 0-4 → outcome (pass / verify / review / reject) with every reason.

The engine takes its state backend, lists, reputation books, gang table and model as arguments, so
tests, the simulator, the backtest and the HTTP service all run the same code.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import msgspec

from woolguard.events import Challenge, Decision, Event, Outcome, Reason
from woolguard.features.catalog import INVITE_ACCEPT
from woolguard.features.state import FeatureState, MemoryState
from woolguard.reasons import CODES, SHOPPER_TEXT
from woolguard.reputation.device import trait_mismatch
from woolguard.reputation.network import IpBook
from woolguard.reputation.phone import KIND_DATA, KIND_IOT, KIND_MVNO, PhoneBook
from woolguard.rules.lists import Lists
from woolguard.rules.policy import Policy, build_policy, parse_policy_text, strongest

#: A development key for hashing phone numbers; a deployment sets WOOLGUARD_SECRET.
DEV_SECRET = b"woolguard-development-secret"


def secret_from_env() -> bytes:
    value = os.environ.get("WOOLGUARD_SECRET")
    return value.encode() if value else DEV_SECRET


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    """What the engine needs to know of a campaign (the campaigns package holds the rest)."""

    id: str
    start_ms: int
    end_ms: int | None = None


class Scorer(Protocol):
    """A learned model: a probability of fraud (0-1) and the features that pushed it most.

    A scorer may also write ``model_actor_score`` (0-100) into the features mapping it is given: the model's score
    with the features that describe the moment rather than the claimant (the campaign's traffic) held at a
    reference value (:class:`woolguard.model.scorer.LightGBMScorer`). When it does not, the engine sets it to
    ``model_score``."""

    def score(self, features: Mapping[str, Any]) -> tuple[float, list[tuple[str, float]]]: ...


#: Features computed from the event itself and its reputation (not from state). name -> neutral value.
STATIC_FEATURES: dict[str, Any] = {
    "kind": "login", "tier": 0, "value_fen": 0, "amount_fen": 0, "hour": 12,
    "acct_age_s": 0, "acct_age_h": 0, "acct_created_known": False, "acct_new_device_min": 0, "campaign_age_s": -1,
    "dev_missing": False, "dev_emulator": False, "dev_rooted": False, "dev_hooked": False,
    "dev_multi_open": False, "dev_cloud_phone": False, "dev_vpn": False, "dev_tampered": False,
    "dev_trait_mismatch": False,
    "ip_missing": False, "ip_invalid": False, "ip_datacenter": False, "ip_proxy": False, "ip_bad": False,
    "phone_missing": True, "phone_virtual": False, "phone_iot": False, "phone_data": False,
    "phone_invalid": False, "phone_foreign": False,
    "has_inviter": False, "has_code": False,
    "gang_score": 0, "gang_size": 0, "model_score": 0, "model_actor_score": 0,
}


#: ``gang_score`` from which an account counts as a known gang member in ``camp_gang_accounts_10m`` (and an inviter
#: as one in ``acct_gang_links_7d``).
GANG_ACTIVE_SCORE = 60
#: Events that link an account to its ``inviter``: accepting an invitation, assisting (helping a friend's claim).
LINK_KINDS = INVITE_ACCEPT


def default_policy_text() -> str:
    return resources.files("woolguard.policies").joinpath("default.yaml").read_text("utf-8")


class Engine:
    def __init__(
        self,
        policy: Policy | None = None,
        state: FeatureState | None = None,
        lists: Lists | None = None,
        phones: PhoneBook | None = None,
        ips: IpBook | None = None,
        campaigns: Mapping[str, CampaignInfo] | None = None,
        gangs: Mapping[str, tuple[int, int]] | None = None,
        model: Scorer | None = None,
        secret: bytes | None = None,
        tz_offset_hours: int = 8,
        remember: int = 100_000,
        tenant: str = "default",
    ):
        self.tenant = tenant
        self.state: FeatureState = state if state is not None else MemoryState()
        self.window_names = [w.name for w in self.state.windows]
        self.feature_names = self.window_names + list(STATIC_FEATURES)
        self.phones = phones or PhoneBook(secret or secret_from_env())
        self.ips = ips or IpBook()
        self.lists = lists or Lists()
        self.campaigns: dict[str, CampaignInfo] = dict(campaigns or {})
        self.gangs: Mapping[str, tuple[int, int]] = gangs or {}
        self.model = model
        self.tz_ms = tz_offset_hours * 3_600_000
        self.policy = policy or self.load_policy_text(default_policy_text())
        #: Policies of single campaigns; events of other campaigns use ``self.policy``.
        self.campaign_policies: dict[str, Policy] = {}
        self._recent: OrderedDict[str, Decision] = OrderedDict()
        self._remember = remember

    # -- policies ------------------------------------------------------------------------------

    def neutral_features(self) -> dict[str, Any]:
        out: dict[str, Any] = dict.fromkeys(self.window_names, 0)
        out.update(STATIC_FEATURES)
        return out

    def load_policy_text(self, text: str, source: str = "<policy>") -> Policy:
        return build_policy(parse_policy_text(text, source), self.neutral_features(), source)

    def set_policy(self, policy: Policy, campaign_id: str | None = None) -> None:
        """Make ``policy`` the default, or the policy of one campaign."""
        if campaign_id is None:
            self.policy = policy
        else:
            self.campaign_policies[campaign_id] = policy

    def policy_for(self, campaign_id: str | None) -> Policy:
        if campaign_id is not None and self.campaign_policies:
            return self.campaign_policies.get(campaign_id, self.policy)
        return self.policy

    # -- the hot path -------------------------------------------------------------------------

    def normalise(self, event: Event) -> Event:
        """Replace a clear phone number by its keyed hash, prefix and block; re-key caller hashes."""
        if event.phone is not None:
            facts = self.phones.facts(event.phone)
            return msgspec.structs.replace(event, phone=None, phone_hash="k:" + facts.hash,
                                           phone_prefix=event.phone_prefix or facts.prefix,
                                           phone_block="k:" + facts.block if facts.block else None)
        if event.phone_hash is not None and not event.phone_hash.startswith("k:"):
            return msgspec.structs.replace(event, phone_hash="k:" + self.phones.keyed("h:" + event.phone_hash))
        return event

    def entities(self, ev: Event) -> tuple[dict[str, str | None], Any]:
        """The state keys of a normalised event (:func:`entities_of` plus the engine's facts) and its IP facts.

        ``ip24`` comes from the IP book; ``gang_account`` is the account when the gang table in force
        (:attr:`gangs`) holds it with ``gang_score >= GANG_ACTIVE_SCORE``, so that windows can count the
        known gang members active right now (``camp_gang_accounts_10m``) while every event reads them.
        ``gang_link`` is the inviter of an ``accept_invite`` or ``assist`` event when the gang table holds *the
        inviter* as a member (same score), so that the account's later events read that it joined through, or
        helped, a known member (``acct_gang_links_7d``: guilt by association)."""
        ents = entities_of(ev)
        ipf = self.ips.facts(ev.ip) if ev.ip else None
        if ipf is not None and ipf.prefix is not None:
            ents["ip24"] = ipf.prefix
        gangs = self.gangs
        if gangs:
            gang = gangs.get(ev.account.id)
            if gang is not None and gang[0] >= GANG_ACTIVE_SCORE:
                ents["gang_account"] = ev.account.id
            inviter = ev.inviter
            if inviter is not None and ev.kind in LINK_KINDS:
                gang = gangs.get(inviter)
                if gang is not None and gang[0] >= GANG_ACTIVE_SCORE:
                    ents["gang_link"] = inviter
        return ents, ipf

    def recall(self, event_id: str) -> Decision | None:
        """The decision this engine already gave for ``event_id`` (within its memory), if any."""
        return self._recent.get(event_id)

    def decide(self, event: Event) -> Decision:
        prior = self._recent.get(event.event_id)
        if prior is not None:  # a retried event: same answer, counted once
            return prior
        ev = self.normalise(event)
        ents, ipf = self.entities(ev)
        return self.decide_observed(ev, ents, ipf, self.state.observe(ev.ts, ev.kind, ents))

    def decide_observed(self, ev: Event, ents: dict[str, str | None], ipf: Any, values: list[int]) -> Decision:
        """The rest of :meth:`decide` once the feature state has answered: ``ev`` normalised, ``ents`` and
        ``ipf`` from :meth:`entities`, ``values`` from ``state.observe`` (the service gets them from the
        Redis script it sent with the event's idempotency claim)."""
        feats = dict(zip(self.window_names, values, strict=True))
        self._static(ev, ipf, feats)
        decision = self._decide(ev, ents, feats)
        recent = self._recent
        recent[ev.event_id] = decision
        if len(recent) > self._remember:
            recent.popitem(last=False)
        return decision

    def _static(self, ev: Event, ipf: Any, f: dict[str, Any]) -> None:
        acct = ev.account
        ts = ev.ts
        f["kind"] = ev.kind.value
        f["tier"] = acct.tier
        f["value_fen"] = round(ev.value * 100) if ev.value is not None else 0
        f["amount_fen"] = round(ev.amount * 100) if ev.amount is not None else 0
        f["hour"] = ((ts + self.tz_ms) // 3_600_000) % 24
        age = max(0, (ts - acct.created_at) // 1000) if acct.created_at is not None else f["acct_seen_s"]
        f["acct_age_s"] = age
        f["acct_age_h"] = age // 3600
        f["acct_created_known"] = acct.created_at is not None
        # minutes the account was known before this device first appeared (0: the device is as old)
        f["acct_new_device_min"] = max(0, f["acct_seen_s"] - f["dev_seen_s"]) // 60 if ev.device else 0
        camp = self.campaigns.get(ev.campaign_id) if ev.campaign_id else None
        f["campaign_age_s"] = (ts - camp.start_ms) // 1000 if camp is not None else -1
        d = ev.device
        if d is None:
            f.update(dev_missing=True, dev_emulator=False, dev_rooted=False, dev_hooked=False,
                     dev_multi_open=False, dev_cloud_phone=False, dev_vpn=False, dev_tampered=False,
                     dev_trait_mismatch=False)
        else:
            f["dev_missing"] = d.id is None
            f["dev_emulator"] = d.emulator
            f["dev_rooted"] = d.rooted
            f["dev_hooked"] = d.hooked
            f["dev_multi_open"] = d.multi_open
            f["dev_cloud_phone"] = d.cloud_phone
            f["dev_vpn"] = d.vpn
            f["dev_tampered"] = d.tampered
            f["dev_trait_mismatch"] = trait_mismatch(d.model, d.os, d.os_version, ev.user_agent)
        if ipf is None:
            f.update(ip_missing=True, ip_invalid=False, ip_datacenter=False, ip_proxy=False, ip_bad=False)
        else:
            lists = ipf.lists
            f["ip_missing"] = False
            f["ip_invalid"] = not (ipf.valid and ipf.public)
            f["ip_datacenter"] = "datacenter" in lists
            f["ip_proxy"] = "proxy" in lists
            f["ip_bad"] = "bad" in lists
        if ev.phone_hash is None:
            f.update(phone_missing=True, phone_virtual=False, phone_iot=False, phone_data=False,
                     phone_invalid=False, phone_foreign=False)
        else:
            prefix = ev.phone_prefix
            pc = self.phones.classify(prefix)
            f["phone_missing"] = False
            f["phone_virtual"] = pc.kind == KIND_MVNO
            f["phone_iot"] = pc.kind == KIND_IOT
            f["phone_data"] = pc.kind == KIND_DATA
            f["phone_foreign"] = bool(prefix) and prefix.startswith("+")  # type: ignore[union-attr]
            f["phone_invalid"] = bool(prefix) and not f["phone_foreign"] and pc.kind is None
        f["has_inviter"] = ev.inviter is not None
        f["has_code"] = ev.code_id is not None
        gang = self.gangs.get(acct.id)
        f["gang_score"], f["gang_size"] = gang if gang is not None else (0, 0)
        f["model_score"] = 0
        f["model_actor_score"] = 0

    def _decide(self, ev: Event, ents: dict[str, str | None], feats: dict[str, Any]) -> Decision:
        policy = self.policy_for(ev.campaign_id)
        reasons: list[Reason] = []
        contributions: list[tuple[str, float]] = []
        if self.model is not None:
            # a scorer that knows the model's context features writes the actor score (0-100) into the mapping;
            # for any other, the actor score is the score
            feats["model_actor_score"] = -1
            prob, contributions = self.model.score(feats)
            ms = feats["model_score"] = round(prob * 100)
            if feats["model_actor_score"] < 0:
                feats["model_actor_score"] = ms
        fired, failed = policy.evaluate(ev.kind, feats)
        score = 0
        forced = 0
        challenge: Challenge | None = None
        hold = False
        for rule in fired:
            code = CODES[rule.reason]
            reasons.append(Reason(code=rule.reason, category=_CATEGORY[code.code], rule=rule.id,
                                  score=0 if rule.shadow else rule.score, level=0 if rule.shadow else rule.level,
                                  values={n: feats[n] for n in rule.refs}, text_en=code.en, text_zh=code.zh,
                                  shadow=rule.shadow))
            if rule.shadow:
                continue
            score += rule.score
            if rule.level > forced:
                forced = rule.level
            if rule.challenge is not None:
                challenge = strongest(challenge, rule.challenge)
            if rule.review:
                hold = True
        for rule in failed:
            code = CODES["engine.rule_error"]
            reasons.append(Reason(code=code.code, category=_CATEGORY[code.code], rule=rule.id,
                                  values={n: feats[n] for n in rule.refs}, text_en=code.en, text_zh=code.zh))
        if contributions and feats["model_score"] >= policy.thresholds[1]:
            code = CODES["model.score"]
            reasons.append(Reason(code=code.code, category=_CATEGORY[code.code], rule="model",
                                  values={"model_score": feats["model_score"],
                                          **{k: round(v, 4) for k, v in contributions[:3]}},
                                  text_en=code.en, text_zh=code.zh))
        level = max(policy.level_for(score, ev.account.tier), forced)
        outcome_floor = Outcome.REVIEW if hold else Outcome.PASS
        hits = self.lists.match(ents, ev.campaign_id, ev.ts)
        if hits:
            kinds = {e.list for e in hits}
            for e in hits:
                code = CODES[f"list.{e.list}"]
                reasons.append(Reason(code=code.code, category=_CATEGORY[code.code], rule=f"list:{e.id or e.entity}",
                                      values={"entity": e.entity, "campaign": e.campaign_id, "note": e.reason},
                                      text_en=code.en, text_zh=code.zh))
            if "block" in kinds:
                level = 4
            elif "allow" in kinds:
                level = 0
                outcome_floor = Outcome.PASS
            elif "review" in kinds:
                outcome_floor = Outcome.REVIEW
        action = policy.action(level)
        outcome = action.outcome
        if outcome_floor is Outcome.REVIEW and outcome in (Outcome.PASS, Outcome.VERIFY):
            outcome = Outcome.REVIEW
        final_challenge = strongest(action.challenge, challenge) if outcome is Outcome.VERIFY else None
        did = decision_id(ev.event_id, self.tenant)
        if outcome is Outcome.PASS:
            return Decision(decision_id=did, event_id=ev.event_id, level=level, outcome=outcome, score=score,
                            reasons=reasons, policy=policy.ref, features=feats)
        en, zh = SHOPPER_TEXT[outcome.value]
        return Decision(decision_id=did, event_id=ev.event_id, level=level, outcome=outcome, score=score,
                        reasons=reasons, challenge=final_challenge, policy=policy.ref, features=feats,
                        message={"en": en.format(ref=did), "zh": zh.format(ref=did)})


#: Each reason code's category as a plain string (an enum's ``.value`` is a slow descriptor on the hot path).
_CATEGORY = {c.code: c.category.value for c in CODES.values()}


def decision_id(event_id: str, tenant: str = "default") -> str:
    """Deterministic: a retried or replayed event gets the same decision id."""
    return "d_" + hashlib.blake2b(f"{tenant}\x00{event_id}".encode(), digest_size=12).hexdigest()


def entities_of(ev: Event) -> dict[str, str | None]:
    """The entities an event is keyed by (``ip24``, ``gang_account`` and ``gang_link`` are filled in by
    :meth:`Engine.entities` from the IP facts and the gang table)."""
    d = ev.device
    g = ev.geo
    return {
        "account": ev.account.id,
        "device": d.id if d is not None else None,
        "ip": ev.ip,
        "ip24": None,
        "phone": ev.phone_hash,
        "phone_block": ev.phone_block,
        "fingerprint": f"{d.model}|{d.os}|{d.os_version}|{d.app_version}" if d is not None and d.model else None,
        "campaign": ev.campaign_id,
        "code": ev.code_id,
        "store": ev.store_id,
        "inviter": ev.inviter,
        "gang_account": None,
        "gang_link": None,
        "address": ev.address_hash,
        "payment": ev.payment_hash,
        "geo": f"{g.lat:.4f},{g.lon:.4f}" if g is not None and g.lat is not None and g.lon is not None else None,
    }
