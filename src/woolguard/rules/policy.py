"""Policies: rules written in CEL over the engine's features, and how their scores become a decision.

A policy is a YAML (or JSON) document::

    id: default
    version: 3
    thresholds: [20, 40, 60, 80]      # score at which levels 1, 2, 3, 4 start
    tier_relief: {3: 10, 4: 20}       # points taken off the score of member / VIP accounts
    outcomes:                         # what each level does
      0: pass
      2: {outcome: verify, challenge: captcha}
      4: reject
    failure_mode: open                # or closed: what to decide when a dependency is down
    rules:
      - id: emulator
        when: dev_emulator && kind in ['claim', 'scan']
        score: 45
        reason: device.emulator
        challenge: face               # optional: the least step-up this rule asks for
        level: 4                      # optional: the least level this rule forces
        review: false                 # optional: true sends a decision that would pass or verify to an analyst
        mode: active                  # or shadow: evaluated and logged, never acted on

Loading checks everything before anything is used: each expression compiles, names only known
features, and evaluates to a bool on a neutral feature set; reason codes exist; outcomes are valid.
Any error refuses the whole policy, naming the rule id, the file line and the position in the
expression. At run time all active and shadow rules that apply to an event kind are compiled into one
CEL program returning a list of booleans (one crossing into the CEL runtime per event); only the
features the rules reference are handed to it, all as ints, bools or strings (cheap to convert).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

import cel
import yaml

from woolguard.events import CHALLENGE_ORDER, Challenge, EventKind, Outcome
from woolguard.reasons import CODES


class PolicyError(ValueError):
    """A policy that cannot be used. ``rule`` and ``position`` say where."""

    def __init__(self, message: str, rule: str | None = None, line: int | None = None,
                 position: str | None = None):
        self.message = message
        self.rule = rule
        self.line = line
        self.position = position
        parts = []
        if rule:
            parts.append(f"rule {rule!r}")
        if line:
            parts.append(f"line {line}")
        if position:
            parts.append(f"expression {position}")
        where = (" (" + ", ".join(parts) + ")") if parts else ""
        super().__init__(f"{message}{where}")

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "rule": self.rule, "line": self.line, "position": self.position}


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    when: str
    reason: str
    score: int = 0
    level: int = 0
    challenge: Challenge | None = None
    kinds: frozenset[EventKind] | None = None
    #: Hold for an analyst: a decision that would pass or verify becomes ``review`` (a step-up only proves
    #: that a person is there, which a paid crowd has; an analyst looks at the evidence instead).
    review: bool = False
    shadow: bool = False
    description: str = ""
    refs: tuple[str, ...] = ()
    line: int | None = None


@dataclass(frozen=True, slots=True)
class LevelAction:
    outcome: Outcome
    challenge: Challenge | None = None


@dataclass
class Policy:
    id: str
    version: int
    rules: list[Rule]
    thresholds: tuple[int, int, int, int] = (20, 40, 60, 80)
    tier_relief: dict[int, int] = field(default_factory=dict)
    outcomes: dict[int, LevelAction] = field(default_factory=dict)
    failure_mode: str = "open"
    description: str = ""
    source: str = ""
    _programs: dict[EventKind, list[_Compiled]] = field(default_factory=dict, repr=False)
    _plans: dict[EventKind, list[tuple[Rule, Any, tuple[str, ...], Any, dict[Any, bool]]]] = field(
        default_factory=dict, repr=False)

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def level_for(self, score: int, tier: int) -> int:
        score -= self.tier_relief.get(tier, 0)
        level = 0
        for i, cut in enumerate(self.thresholds, start=1):
            if score >= cut:
                level = i
        return level

    def action(self, level: int) -> LevelAction:
        return self.outcomes[level]

    def program_for(self, kind: EventKind) -> list[_Compiled]:
        """The rules that apply to ``kind``, each compiled once, in policy order."""
        hit = self._programs.get(kind)
        if hit is None:
            hit = self._programs[kind] = [_compiled(r) for r in self.rules if r.kinds is None or kind in r.kinds]
        return hit

    def evaluate(self, kind: EventKind, features: dict[str, Any]) -> tuple[list[Rule], list[Rule]]:
        """The rules that fired, and those that raised an error, for one event.

        A CEL expression is a pure function of the variables it reads, so each rule's verdict is kept per
        distinct tuple of those values (most rules read one or two small counts or flags): CEL runs only
        for combinations not seen recently. Caches are bounded (cleared when full).
        """
        fired: list[Rule] = []
        failed: list[Rule] = []
        for rule, program, refs, key_of, cache in self.plan_for(kind):
            key = key_of(features)
            verdict = cache.get(key)
            if verdict is None:
                try:
                    verdict = program.execute({n: features[n] for n in refs}) is True
                except Exception:
                    failed.append(rule)
                    continue
                if len(cache) >= _CACHE_SIZE:
                    cache.clear()
                cache[key] = verdict
            if verdict:
                fired.append(rule)
        return fired, failed

    def plan_for(self, kind: EventKind) -> list[tuple[Rule, Any, tuple[str, ...], Any, dict[Any, bool]]]:
        """Per rule: the rule, its program, the features it reads, a getter of their values, its cache."""
        hit = self._plans.get(kind)
        if hit is None:
            hit = self._plans[kind] = [
                (c.rule, c.program, c.refs, itemgetter(*c.refs) if c.refs else _no_refs, c.cache)
                for c in self.program_for(kind)
            ]
        return hit


_CACHE_SIZE = 4096


def _no_refs(features: dict[str, Any]) -> tuple[()]:
    return ()


@dataclass(slots=True)
class _Compiled:
    rule: Rule
    program: Any
    refs: tuple[str, ...]
    single: bool
    cache: dict[Any, bool]


def _compiled(rule: Rule) -> _Compiled:
    return _Compiled(rule, cel.compile(rule.when), rule.refs, len(rule.refs) == 1, {})


# -----------------------------------------------------------------------------------------------
# Loading


class _LineLoader(yaml.SafeLoader):
    """A YAML loader that records the line of each mapping as ``__line__``."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[str, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_POSITION = re.compile(r"<input>:(\d+):(\d+)")
_RULE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def parse_policy_text(text: str, source: str = "<policy>") -> dict[str, Any]:
    try:
        doc = yaml.load(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise PolicyError(f"{source}: not valid YAML/JSON: {getattr(exc, 'problem', exc)}",
                          line=(mark.line + 1) if mark else None) from None
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: a policy is a mapping with 'id' and 'rules'")
    return doc


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k != "__line__"}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _action(value: Any, level: int) -> LevelAction:
    if isinstance(value, str):
        value = {"outcome": value}
    if not isinstance(value, dict):
        raise PolicyError(f"outcomes.{level}: expected an outcome name or a mapping")
    try:
        outcome = Outcome(value.get("outcome"))
    except ValueError:
        raise PolicyError(f"outcomes.{level}: outcome must be one of {[o.value for o in Outcome]}",
                          line=value.get("__line__")) from None
    challenge = value.get("challenge")
    if outcome is Outcome.VERIFY:
        try:
            challenge = Challenge(challenge or "captcha")
        except ValueError:
            raise PolicyError(f"outcomes.{level}: challenge must be one of {[c.value for c in Challenge]}",
                              line=value.get("__line__")) from None
    elif challenge is not None:
        raise PolicyError(f"outcomes.{level}: only 'verify' takes a challenge", line=value.get("__line__"))
    return LevelAction(outcome, challenge)


DEFAULT_OUTCOMES = {0: LevelAction(Outcome.PASS), 1: LevelAction(Outcome.PASS),
                    2: LevelAction(Outcome.VERIFY, Challenge.CAPTCHA),
                    3: LevelAction(Outcome.REVIEW), 4: LevelAction(Outcome.REJECT)}


def build_policy(doc: dict[str, Any], features: dict[str, Any], source: str = "<policy>") -> Policy:
    """Validate a parsed policy document against the engine's features (name -> neutral value)."""
    pid = doc.get("id")
    if not isinstance(pid, str) or not _RULE_ID.match(pid):
        raise PolicyError("policy 'id' must be a short name (letters, digits, _ . : -)")
    version = doc.get("version", 1)
    if not isinstance(version, int) or version < 0:
        raise PolicyError("policy 'version' must be a non-negative integer")
    thresholds = doc.get("thresholds", [20, 40, 60, 80])
    if (not isinstance(thresholds, list) or len(thresholds) != 4
            or not all(isinstance(t, int) for t in thresholds) or sorted(thresholds) != thresholds):
        raise PolicyError("'thresholds' must be four increasing integers (levels 1..4)")
    relief_raw = doc.get("tier_relief", {}) or {}
    if not isinstance(relief_raw, dict):
        raise PolicyError("'tier_relief' maps a tier (0-4) to points")
    relief = {}
    for k, v in relief_raw.items():
        if k == "__line__":
            continue
        if not (isinstance(k, int) and 0 <= k <= 4 and isinstance(v, int)):
            raise PolicyError("'tier_relief' maps a tier (0-4) to integer points", line=relief_raw.get("__line__"))
        relief[k] = v
    outcomes = dict(DEFAULT_OUTCOMES)
    raw_outcomes = doc.get("outcomes", {}) or {}
    if not isinstance(raw_outcomes, dict):
        raise PolicyError("'outcomes' maps a level (0-4) to an outcome")
    for k, v in raw_outcomes.items():
        if k == "__line__":
            continue
        if not (isinstance(k, int) and 0 <= k <= 4):
            raise PolicyError(f"outcomes: level {k!r} is not 0-4", line=raw_outcomes.get("__line__"))
        outcomes[k] = _action(v, k)
    failure_mode = doc.get("failure_mode", "open")
    if failure_mode not in ("open", "closed"):
        raise PolicyError("'failure_mode' must be 'open' or 'closed'")
    default_kinds = None if doc.get("kinds") is None else _parse_kinds(doc.get("kinds"), None, None)
    raw_rules = doc.get("rules")
    if not isinstance(raw_rules, list):
        raise PolicyError("'rules' must be a list")
    rules: list[Rule] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_rules):
        rules.append(_build_rule(raw, i, features, seen, default_kinds))
    policy = Policy(id=pid, version=version, rules=rules, thresholds=tuple(thresholds),  # type: ignore[arg-type]
                    tier_relief=relief, outcomes=outcomes, failure_mode=failure_mode,
                    description=str(doc.get("description", "")),
                    source=json.dumps(_strip(doc), ensure_ascii=False, sort_keys=True))
    for kind in EventKind:  # compile the combined programs now, so a bad policy never reaches traffic
        try:
            policy.program_for(kind)
        except ValueError as exc:
            raise PolicyError(f"rules do not compile together: {exc}") from None
    return policy


def _parse_kinds(value: Any, rule: str | None, line: int | None) -> frozenset[EventKind]:
    if not isinstance(value, list) or not value:
        raise PolicyError("'kinds' must be a non-empty list of event kinds", rule=rule, line=line)
    try:
        return frozenset(EventKind(k) for k in value)
    except ValueError:
        raise PolicyError(f"'kinds' must name event kinds: {[k.value for k in EventKind]}",
                          rule=rule, line=line) from None


def _build_rule(raw: Any, index: int, features: dict[str, Any], seen: set[str],
                default_kinds: frozenset[EventKind] | None = None) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyError(f"rules[{index}] must be a mapping")
    line = raw.get("__line__")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _RULE_ID.match(rid):
        raise PolicyError(f"rules[{index}]: 'id' must be a short name", line=line)
    if rid in seen:
        raise PolicyError("duplicate rule id", rule=rid, line=line)
    seen.add(rid)
    unknown = set(raw) - {"id", "when", "reason", "score", "level", "challenge", "review", "kinds", "mode",
                          "description", "__line__"}
    if unknown:
        raise PolicyError(f"unknown keys {sorted(unknown)}", rule=rid, line=line)
    when = raw.get("when")
    if not isinstance(when, str) or not when.strip():
        raise PolicyError("'when' must be a CEL expression", rule=rid, line=line)
    try:
        program = cel.compile(when)
    except ValueError as exc:
        text = str(exc)
        m = _POSITION.search(text)
        detail = text.split("ERROR:", 1)[-1].strip().splitlines()[0] if "ERROR:" in text else text
        raise PolicyError(f"CEL syntax error: {detail}", rule=rid, line=line,
                          position=f"line {m.group(1)}, column {m.group(2)}" if m else None) from None
    refs = tuple(program.variables())
    missing = [name for name in refs if name not in features]
    if missing:
        raise PolicyError(f"unknown feature(s) {missing}; see docs/features.md", rule=rid, line=line)
    try:
        value = program.execute({name: features[name] for name in refs})
    except Exception as exc:
        raise PolicyError(f"does not evaluate: {exc}", rule=rid, line=line) from None
    if not isinstance(value, bool):
        raise PolicyError(f"must evaluate to true or false, got {type(value).__name__}", rule=rid, line=line)
    reason = raw.get("reason")
    if reason not in CODES:
        raise PolicyError(f"unknown reason code {reason!r}; see docs/reasons.md", rule=rid, line=line)
    score = raw.get("score", 0)
    level = raw.get("level", 0)
    if not isinstance(score, int) or not -100 <= score <= 100:
        raise PolicyError("'score' must be an integer from -100 to 100", rule=rid, line=line)
    if not isinstance(level, int) or not 0 <= level <= 4:
        raise PolicyError("'level' must be an integer 0-4", rule=rid, line=line)
    challenge = raw.get("challenge")
    if challenge is not None:
        try:
            challenge = Challenge(challenge)
        except ValueError:
            raise PolicyError(f"'challenge' must be one of {[c.value for c in Challenge]}",
                              rule=rid, line=line) from None
    review = raw.get("review", False)
    if not isinstance(review, bool):
        raise PolicyError("'review' must be true or false", rule=rid, line=line)
    kinds_raw = raw.get("kinds")
    kinds = default_kinds if kinds_raw is None else _parse_kinds(kinds_raw, rid, line)
    mode = raw.get("mode", "active")
    if mode not in ("active", "shadow"):
        raise PolicyError("'mode' must be 'active' or 'shadow'", rule=rid, line=line)
    return Rule(id=rid, when=when, reason=reason, score=score, level=level, challenge=challenge, kinds=kinds,
                review=review, shadow=mode == "shadow", description=str(raw.get("description", "")), refs=refs,
                line=line)


def load_policy(path: str | Path, features: dict[str, Any]) -> Policy:
    p = Path(path)
    try:
        text = p.read_text("utf-8")
    except OSError as exc:
        raise PolicyError(f"cannot read policy {p}: {exc.strerror}") from None
    return build_policy(parse_policy_text(text, str(p)), features, str(p))


def strongest(a: Challenge | None, b: Challenge | None) -> Challenge | None:
    if a is None:
        return b
    if b is None:
        return a
    return a if CHALLENGE_ORDER[a] >= CHALLENGE_ORDER[b] else b
