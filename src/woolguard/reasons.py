"""The reason-code taxonomy: every reason a decision can carry, with texts for operators and shoppers.

Codes are ``category.name`` (``device.emulator``); categories follow the field's usual split (account,
behaviour, environment, device, gang) plus list, model and engine. Operator texts say exactly what fired;
shopper texts say enough to act (retry, verify, call support) without teaching a ring what to change.
``docs/reasons.md`` is generated from this table (``woolguard reasons --markdown``).

The decision log stores reasons without the category and texts this table gives their code, and its readers
fill them in from here (``woolguard.storage.decision_log.compact_reasons`` / ``expand_reasons``): rewording a
text rewords it in logged decisions too; do not remove a code that logged decisions may carry.
"""

from __future__ import annotations

from dataclasses import dataclass

from woolguard.events import Category


@dataclass(frozen=True, slots=True)
class ReasonCode:
    code: str
    category: Category
    en: str
    zh: str


_A, _B, _E, _D, _G, _L, _M = (Category.ACCOUNT, Category.BEHAVIOUR, Category.ENVIRONMENT, Category.DEVICE,
                              Category.GANG, Category.LIST, Category.MODEL)

CODES: dict[str, ReasonCode] = {c.code: c for c in (
    ReasonCode("account.fresh", _A, "Account created very recently", "账号注册时间很短"),
    ReasonCode("account.payout_limit", _A, "Account took more payouts than the campaign allows",
               "账号领取次数超过活动限制"),
    ReasonCode("account.many_devices", _A, "Account used many devices", "账号关联设备过多"),
    ReasonCode("account.new_device", _A, "Known account suddenly on a device never seen before",
               "老账号突然使用从未出现过的设备"),
    ReasonCode("account.rotating_ip", _A, "Account switched IPs very often (dial-up rotation)",
               "账号频繁更换IP（秒拨）"),
    ReasonCode("account.trusted", _A, "Established account with a long, consistent history",
               "账号历史长且一致"),
    ReasonCode("behaviour.velocity.device", _B, "Too many payouts from one device", "同一设备领取过于频繁"),
    ReasonCode("behaviour.velocity.ip", _B, "Too many payouts from one network", "同一网络领取过于频繁"),
    ReasonCode("behaviour.batch_register", _B, "Batch sign-ups from one network", "同一网络批量注册"),
    ReasonCode("behaviour.machine_timing", _B, "Machine-regular timing between actions", "操作间隔过于规律（自动机）"),
    ReasonCode("behaviour.code_reuse", _B, "Prize code already scanned", "奖品码已被扫描"),
    ReasonCode("behaviour.invite_farm", _B, "Inviter fans out to many fresh accounts", "邀请人短时间邀请大量新账号"),
    ReasonCode("behaviour.lockstep", _B, "Acts in lockstep with other accounts", "与其他账号同步操作"),
    ReasonCode("environment.ip.datacenter", _E, "IP in a data centre or public cloud", "IP属于机房/云服务器"),
    ReasonCode("environment.ip.proxy", _E, "IP is a known proxy or VPN exit", "IP为代理/VPN出口"),
    ReasonCode("environment.ip.bad", _E, "IP on a known-bad list", "IP在恶意名单中"),
    ReasonCode("environment.ip.aggregation", _E, "Many accounts on one network", "同一网络聚集大量账号"),
    ReasonCode("environment.ip.invalid", _E, "IP is missing, invalid or not public", "IP缺失、无效或非公网"),
    ReasonCode("environment.phone.virtual", _E, "Virtual-operator phone number", "虚拟运营商号段"),
    ReasonCode("environment.phone.iot", _E, "IoT or data-only phone number", "物联网卡/上网卡号段"),
    ReasonCode("environment.phone.invalid", _E, "Phone number is not a valid number", "手机号无效"),
    ReasonCode("environment.phone.shared", _E, "Phone number used by several accounts", "手机号被多个账号使用"),
    ReasonCode("environment.phone.block", _E, "Many accounts from one block of consecutive numbers (modem pool)",
               "多个账号使用连号手机号（猫池）"),
    ReasonCode("device.emulator", _D, "Emulator", "模拟器"),
    ReasonCode("device.cloud_phone", _D, "Cloud phone", "云手机"),
    ReasonCode("device.rooted", _D, "Rooted or jailbroken device", "设备已root/越狱"),
    ReasonCode("device.hooked", _D, "Hook framework on the device", "设备存在Hook框架"),
    ReasonCode("device.multi_open", _D, "App cloned / multi-open", "应用多开"),
    ReasonCode("device.tampered", _D, "Device traits forged or contradictory (device tampering)",
               "设备信息伪造或矛盾（改机）"),
    ReasonCode("device.multi_account", _D, "Many accounts on one device", "同一设备关联多个账号"),
    ReasonCode("device.new", _D, "Device never seen before", "新设备"),
    ReasonCode("device.missing", _D, "No device identifier", "缺少设备标识"),
    ReasonCode("gang.member", _G, "Member of a detected gang", "属于已识别的团伙"),
    ReasonCode("gang.link", _G, "Joined through, or assisted, a member of a detected gang",
               "通过已识别团伙成员的邀请加入，或为其助力"),
    ReasonCode("gang.crowd", _G, "Payout while a detected gang is active in numbers in the campaign",
               "已识别团伙在活动中集中出现期间的领取"),
    ReasonCode("list.block", _L, "On a block list", "命中黑名单"),
    ReasonCode("list.allow", _L, "On an allow list", "命中白名单"),
    ReasonCode("list.review", _L, "On a review list", "命中人工审核名单"),
    ReasonCode("model.score", _M, "The learned model rates this event risky", "风险模型评分高"),
    ReasonCode("engine.rule_error", Category.ENGINE, "A rule could not be evaluated", "规则无法计算"),
    ReasonCode("engine.degraded", Category.ENGINE, "A dependency failed; the policy's failure mode decided",
               "依赖服务故障，按策略降级处理"),
)}

#: What a shopper is told, by outcome (the brand shows it; {ref} is the decision id for support).
SHOPPER_TEXT: dict[str, tuple[str, str]] = {
    "pass": ("", ""),
    "verify": ("Please complete a quick security check to continue.", "请完成安全验证后继续。"),
    "review": ("Your request is being checked and will be completed shortly. Reference: {ref}",
               "您的请求正在审核中，稍后完成。参考号：{ref}"),
    "reject": ("We could not complete this request because of unusual activity on the account or device. "
               "If you think this is a mistake, contact customer service with reference {ref}.",
               "由于账号或设备存在异常，本次请求未能完成。如有疑问，请凭参考号 {ref} 联系客服。"),
}


def lookup(code: str) -> ReasonCode:
    try:
        return CODES[code]
    except KeyError:
        raise KeyError(f"unknown reason code {code!r}; see woolguard.reasons.CODES") from None


def markdown_table() -> str:
    lines = ["| code | category | operator text (en) | operator text (zh) |", "|---|---|---|---|"]
    lines += [f"| `{c.code}` | {c.category} | {c.en} | {c.zh} |" for c in CODES.values()]
    return "\n".join(lines)
