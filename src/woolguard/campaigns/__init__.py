"""Campaigns: rules and versions, one-item-one-code codes, prize draws, coupons, the budget ledger.

``models`` (rules), ``codes`` (signed codes, export), ``service`` (scan, claim, redeem, refund, challenge
results, review verdicts: functions over a SQLAlchemy connection), ``ledger`` (rows and the audit),
``report`` (savings per campaign and day, attack pressure). See docs/campaigns.md.
"""

from woolguard.campaigns.codes import CodeError, CodeSigner
from woolguard.campaigns.models import Limits, PrizeTier, Rules, RulesError, parse_rules
from woolguard.campaigns.service import ActionResult, CampaignError

__all__ = ["ActionResult", "CampaignError", "CodeError", "CodeSigner", "Limits", "PrizeTier", "Rules",
           "RulesError", "parse_rules"]
