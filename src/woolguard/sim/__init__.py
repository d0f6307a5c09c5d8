"""The simulator: labelled scan-to-win campaign traffic, genuine shoppers and wool-party rings.

``simulate(cfg)`` streams :class:`woolguard.events.Event` structs in time order, each labelled in
``truth`` with ``"genuine"`` or an archetype (``scripts``, ``phone_farm``, ``device_farm``,
``paid_crowd``); ``challenge_passed`` says whether the actor behind an event would pass a step-up
challenge; ``write_jsonl`` / ``read_jsonl`` record and replay a stream. See ``docs/archetypes.md``.

Nested structs (``account``, ``device``, ``geo``) may be shared between events of one actor: treat
events as read-only.
"""

from woolguard.sim.challenge import PASS_RATES, challenge_passed
from woolguard.sim.config import ARCHETYPES, GENUINE, SimConfig, campaign_info
from woolguard.sim.jsonl import read_jsonl, write_jsonl
from woolguard.sim.stream import simulate
from woolguard.sim.tally import tally

__all__ = ["ARCHETYPES", "GENUINE", "PASS_RATES", "SimConfig", "campaign_info", "challenge_passed",
           "read_jsonl", "simulate", "tally", "write_jsonl"]
