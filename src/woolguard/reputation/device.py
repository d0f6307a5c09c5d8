"""Device reputation: the SDK's flags and whether the reported traits agree with each other.

Device-tampering tools (改机) forge a model, an OS and a user agent; forged sets often contradict
themselves (an iPhone model on Android, an Android user agent on iOS, an OS version that does not exist).
"""

from __future__ import annotations

from functools import lru_cache

_IOS_MODELS = ("iphone", "ipad", "ipod")

#: Plausible major OS versions in current traffic; others are forged or ancient.
OS_MAJOR = {"ios": range(12, 21), "android": range(7, 18), "harmonyos": range(2, 7)}


def _major(version: str | None) -> int | None:
    if not version:
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


@lru_cache(maxsize=1 << 15)
def trait_mismatch(model: str | None, os: str | None, os_version: str | None, user_agent: str | None) -> bool:
    """True when the reported traits contradict each other."""
    os_l = (os or "").lower()
    if model and os_l and model.lower().startswith(_IOS_MODELS) != (os_l == "ios"):
        return True
    if user_agent and os_l:
        ua = user_agent.lower()
        ua_ios = "iphone" in ua or "ipad" in ua or "cpu os" in ua
        ua_android = "android" in ua
        ua_harmony = "harmonyos" in ua or "openharmony" in ua
        if os_l == "ios" and (ua_android or ua_harmony) and not ua_ios:
            return True
        if os_l == "android" and ua_ios and not ua_android:
            return True
    major = _major(os_version)
    return bool(major is not None and os_l in OS_MAJOR and major not in OS_MAJOR[os_l])
