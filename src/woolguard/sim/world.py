"""The simulated world: cities and their networks, device models, phone-number segments, prize tiers.

Everything here is static reference data plus a few pure helpers (integer mixing, IP formatting, user
agents). The numbers are illustrative but shaped like the real thing: mainland operator segments, per-city
broadband ranges, carrier NAT pools shared by many subscribers, public-cloud ranges, a Chinese-market
device catalogue weighted by popularity. None of it is meant to be an authoritative list.
"""

from __future__ import annotations

from bisect import bisect
from itertools import accumulate

from woolguard.events import Device, Geo

MASK64 = (1 << 64) - 1
MASK48 = (1 << 48) - 1


def mix64(*parts: int) -> int:
    """A stable 64-bit hash of integers (splitmix64 finaliser, chained)."""
    h = 0x9E3779B97F4A7C15
    for p in parts:
        h = (h ^ (p & MASK64)) * 0xBF58476D1CE4E5B9 & MASK64
        h ^= h >> 31
        h = (h * 0x94D049BB133111EB) & MASK64
        h ^= h >> 29
    return h


def unit(h: int) -> float:
    """A 64-bit hash as a float in [0, 1)."""
    return (h >> 11) * (1.0 / (1 << 53))


def scramble48(x: int) -> int:
    """A bijection on 48-bit integers: distinct inputs give distinct, random-looking outputs."""
    x &= MASK48
    x = (x * 0x5DEECE66D + 0xB) & MASK48  # odd multiplier: bijective mod 2**48
    x ^= x >> 21
    x = (x * 0x2545F4914F6D) & MASK48  # odd
    x ^= x >> 17
    x = (x * 0x1B873593) & MASK48  # odd
    x ^= x >> 23
    return x


def account_id(space: int, index: int) -> str:
    """Unique, opaque account ids: genuine and gang accounts look alike."""
    return "u" + format(scramble48((space << 40) | index), "012x")


def ip_str(x: int) -> str:
    return f"{x >> 24 & 255}.{x >> 16 & 255}.{x >> 8 & 255}.{x & 255}"


def ip_int(text: str) -> int:
    a, b, c, d = (int(p) for p in text.split("."))
    return a << 24 | b << 16 | c << 8 | d


class Picker:
    """Weighted choice with a pre-computed cumulative table (one random() and one bisect)."""

    __slots__ = ("cum", "items", "total")

    def __init__(self, pairs):
        pairs = list(pairs)
        self.items = [p[0] for p in pairs]
        self.cum = list(accumulate(p[1] for p in pairs))
        self.total = self.cum[-1]

    def pick(self, u: float):
        return self.items[bisect(self.cum, u * self.total)]


# ---------------------------------------------------------------------------------------------------
# Cities and their networks

# (name, region, lat, lon, weight of genuine users, telecom /16s, unicom /16s, mobile /16s)
CITIES = [
    ("Shanghai", "Shanghai", 31.23, 121.47, 9.0, ["180.165", "116.228", "101.88"], ["112.64", "140.207"],
     ["117.135", "223.104"]),
    ("Beijing", "Beijing", 39.90, 116.41, 8.0, ["106.120", "114.240"], ["123.112", "61.148", "111.192"],
     ["111.196", "223.71"]),
    ("Guangzhou", "Guangdong", 23.13, 113.26, 7.0, ["113.108", "14.127", "183.6"], ["58.248"],
     ["120.229", "223.73"]),
    ("Shenzhen", "Guangdong", 22.54, 114.06, 7.0, ["119.123", "116.24", "183.37"], ["112.95"],
     ["120.230", "223.74"]),
    ("Hangzhou", "Zhejiang", 30.27, 120.15, 5.0, ["115.192", "122.224"], ["60.12"], ["112.17", "223.93"]),
    ("Chengdu", "Sichuan", 30.57, 104.07, 5.5, ["171.208", "182.139"], ["125.70", "118.113"],
     ["117.172", "223.87"]),
    ("Wuhan", "Hubei", 30.59, 114.31, 4.5, ["27.17", "59.172", "111.175"], ["113.57"],
     ["117.154", "223.104"]),
    ("Nanjing", "Jiangsu", 32.06, 118.80, 4.0, ["180.110", "121.229"], ["58.240"], ["112.2", "223.66"]),
    ("Chongqing", "Chongqing", 29.56, 106.55, 4.5, ["222.177", "113.204"], ["113.207"],
     ["117.186", "223.85"]),
    ("Xi'an", "Shaanxi", 34.34, 108.94, 3.5, ["113.140", "117.32"], ["123.139"], ["117.136", "223.90"]),
    ("Tianjin", "Tianjin", 39.34, 117.36, 3.0, ["60.25", "219.150"], ["117.8", "60.26"],
     ["111.161", "223.72"]),
    ("Suzhou", "Jiangsu", 31.30, 120.59, 3.0, ["58.208", "180.108"], ["112.80"], ["112.3", "223.67"]),
    ("Changsha", "Hunan", 28.23, 112.94, 3.0, ["175.0", "222.240"], ["58.20"], ["117.136", "223.146"]),
    ("Zhengzhou", "Henan", 34.75, 113.63, 3.5, ["171.8", "1.192"], ["42.224", "61.52"],
     ["117.158", "223.91"]),
    ("Dongguan", "Guangdong", 23.02, 113.75, 2.5, ["113.97", "183.30", "219.131"], ["58.253"],
     ["120.231", "223.75"]),
    ("Qingdao", "Shandong", 36.07, 120.38, 2.5, ["182.34"], ["27.223", "123.235"], ["120.192", "223.99"]),
    ("Shenyang", "Liaoning", 41.81, 123.43, 2.5, ["59.44"], ["175.168", "60.18"], ["111.33", "223.101"]),
    ("Hefei", "Anhui", 31.82, 117.23, 2.5, ["114.97", "60.166"], ["112.26"], ["112.27", "223.240"]),
    ("Fuzhou", "Fujian", 26.07, 119.30, 2.0, ["27.156", "110.90"], ["36.248"], ["112.5", "223.104"]),
    ("Putian", "Fujian", 25.45, 119.01, 0.6, ["27.150", "117.25"], ["36.250"], ["112.48", "223.105"]),
    ("Kunming", "Yunnan", 25.04, 102.71, 2.0, ["182.242", "116.52"], ["14.204"], ["112.112", "223.106"]),
    ("Nanning", "Guangxi", 22.82, 108.37, 1.8, ["171.104", "113.15"], ["221.7"], ["117.140", "223.107"]),
    ("Harbin", "Heilongjiang", 45.80, 126.53, 1.8, ["112.100", "221.208"], ["1.188"], ["111.40", "223.100"]),
    ("Jinan", "Shandong", 36.65, 117.12, 2.0, ["58.56"], ["119.164", "27.192"], ["120.221", "223.98"]),
]
CITY_PICKER = Picker((i, c[4]) for i, c in enumerate(CITIES))
N_CITIES = len(CITIES)
GEO_BY_CITY = [Geo(city=c[0], region=c[1], country="CN") for c in CITIES]


def _prefix16(text: str) -> int:
    a, b = text.split(".")
    return (int(a) << 24) | (int(b) << 16)


#: Per city: broadband /16s (telecom + unicom) and mobile-data /16s.
BROADBAND = [[_prefix16(p) for p in c[5] + c[6]] for c in CITIES]
MOBILE = [[_prefix16(p) for p in c[7]] for c in CITIES]


def broadband_ip(city: int, h: int) -> int:
    """A residential broadband address in ``city`` chosen by the hash ``h``."""
    ranges = BROADBAND[city]
    low = (h >> 8) & 0xFFFF
    if low & 0xFF in (0, 255):
        low ^= 0x81
    return ranges[h % len(ranges)] | low


def nat_ip(city: int, carrier: int, u: float) -> int:
    """A carrier-grade NAT gateway address: a small pool per (city, carrier) shared by many subscribers."""
    ranges = MOBILE[city]
    base = ranges[carrier % len(ranges)]
    pool = 48 + 40 * (carrier + city) % 160  # a few dozen to ~200 public addresses
    k = int(u * pool)
    return base | ((carrier * 37 + 11) & 0xFF) << 8 | (k * 7 % 250 + 3)


#: Venues with public Wi-Fi (mall, campus, office tower, station): per city, (kind, weight).
VENUE_KINDS = [("mall", 4), ("campus", 3), ("office", 3), ("station", 1), ("hotel", 1)]
VENUES_PER_CITY = 12


def venue_ip(city: int, venue: int) -> int:
    h = mix64(0x7E17E, city, venue)
    return broadband_ip(city, h) & ~0x7 | (2 + (h >> 40) % 3)


#: Public-cloud ranges (data centres): Alibaba Cloud, Tencent Cloud, Huawei Cloud, AWS China, a VPS host.
CLOUD_RANGES = [
    ("aliyun", ip_int("47.92.0.0"), 1 << 18),
    ("aliyun", ip_int("39.96.0.0"), 1 << 18),
    ("aliyun", ip_int("8.130.0.0"), 1 << 17),
    ("tencent", ip_int("49.232.0.0"), 1 << 18),
    ("tencent", ip_int("81.68.0.0"), 1 << 18),
    ("tencent", ip_int("150.158.0.0"), 1 << 16),
    ("huawei", ip_int("121.36.0.0"), 1 << 16),
    ("huawei", ip_int("124.70.0.0"), 1 << 16),
    ("aws", ip_int("52.80.0.0"), 1 << 16),
    ("aws", ip_int("54.222.0.0"), 1 << 17),
    ("vps", ip_int("103.97.0.0"), 1 << 12),
]
def cloud_ip(h: int) -> int:
    _, base, size = CLOUD_RANGES[h % len(CLOUD_RANGES)]
    return base + ((h >> 8) % size | 1)


#: Corporate VPN exits: a handful of fixed addresses, half of them in cloud ranges.
CORPORATE_EXITS = [
    cloud_ip(mix64(0xC0, i)) if i % 2 == 0 else broadband_ip(i % N_CITIES, mix64(0xC1, i)) for i in range(40)
]



# ---------------------------------------------------------------------------------------------------
# Phone numbers

#: Ordinary segments of the three operators (carrier 0 = China Mobile, 1 = Unicom, 2 = Telecom).
SEGMENTS = {
    0: ["134", "135", "136", "137", "138", "139", "147", "150", "151", "152", "157", "158", "159", "172",
        "178", "182", "183", "184", "187", "188", "195", "198"],
    1: ["130", "131", "132", "145", "155", "156", "166", "175", "176", "185", "186", "196"],
    2: ["133", "149", "153", "173", "177", "180", "181", "189", "190", "191", "193", "199"],
}
CARRIER_PICKER = Picker([(0, 0.58), (1, 0.22), (2, 0.20)])
#: Virtual-operator (MVNO) segments, with the network they ride on.
MVNO_SEGMENTS = [("170", 0), ("171", 1), ("162", 2), ("165", 0), ("167", 1)]
#: IoT / data-only segments (some can receive SMS).
IOT_SEGMENTS = [("140", 0), ("141", 2), ("144", 0), ("146", 1), ("148", 0)]


def ordinary_number(h: int) -> tuple[str, int]:
    carrier = CARRIER_PICKER.pick(unit(h))
    segs = SEGMENTS[carrier]
    seg = segs[(h >> 20) % len(segs)]
    return f"{seg}{(h >> 32) % 100_000_000:08d}", carrier


def virtual_number(h: int, iot: bool = False) -> tuple[str, int]:
    segs = IOT_SEGMENTS if iot else MVNO_SEGMENTS
    seg, carrier = segs[h % len(segs)]
    return f"{seg}{(h >> 16) % 100_000_000:08d}", carrier


# ---------------------------------------------------------------------------------------------------
# Devices

ANDROID_UA = ("Mozilla/5.0 (Linux; Android {v}; {m} Build/{b}; wv) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Version/4.0 Chrome/{c}.0.0.0 Mobile Safari/537.36 XWEB/{x} MMWEBSDK/20240301 MicroMessenger/"
              "{w}(0x2800{wc}) WeChat/arm64 Weixin NetType/{n} Language/zh_CN ABI/arm64 "
              "MiniProgramEnv/android")
IOS_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
          "Mobile/15E148 MicroMessenger/{w}(0x1800{wc}) NetType/{n} Language/zh_CN")
HARMONY_UA = ("Mozilla/5.0 (Linux; Android 12; HarmonyOS; {m}; HMSCore 6.13) AppleWebKit/537.36 (KHTML, like "
              "Gecko) Chrome/114.0.0.0 Mobile Safari/537.36 MicroMessenger/{w}(0x2800{wc}) NetType/{n} "
              "Language/zh_CN MiniProgramEnv/android")
WECHAT_VERSIONS = [("8.0.47", "2F35"), ("8.0.48", "3030"), ("8.0.49", "3139"), ("8.0.50", "3237"),
                   ("8.0.44", "2C39")]
BUILDS = ["UKQ1.230804.001", "TKQ1.221114.001", "SKQ1.211006.001", "RKQ1.200826.002", "UP1A.231005.007",
          "TP1A.220624.014", "QKQ1.190910.002"]

# (model, os, market weight, [(os_version, weight)], cheap) — Chinese-market models as the SDK reports them.
_A13 = [("13", 5), ("14", 4), ("12", 2)]
_A14 = [("14", 6), ("13", 3)]
_OLD = [("10", 3), ("11", 4), ("12", 3), ("9", 1)]
_IOS = [("17.4.1", 4), ("17.5.1", 5), ("18.0.1", 3), ("18.1", 3), ("16.7.8", 2), ("17.2", 2)]
_IOS_OLD = [("15.8.2", 3), ("16.7.8", 4), ("17.5.1", 2)]
_HM = [("4.0.0", 4), ("4.2.0", 5), ("3.0.0", 2)]
DEVICE_MODELS = [
    ("iPhone15,2", "ios", 4.0, _IOS, False), ("iPhone15,3", "ios", 3.0, _IOS, False),
    ("iPhone16,1", "ios", 4.0, _IOS, False), ("iPhone16,2", "ios", 4.5, _IOS, False),
    ("iPhone14,5", "ios", 4.0, _IOS, False), ("iPhone14,2", "ios", 2.5, _IOS, False),
    ("iPhone13,2", "ios", 3.0, _IOS, False), ("iPhone12,1", "ios", 3.0, _IOS_OLD, False),
    ("iPhone14,7", "ios", 2.5, _IOS, False), ("iPhone17,1", "ios", 2.0, [("18.0.1", 3), ("18.1", 4)], False),
    ("iPhone11,8", "ios", 1.0, _IOS_OLD, False), ("iPhone14,6", "ios", 0.8, _IOS, False),
    ("ALN-AL00", "harmonyos", 3.5, _HM, False), ("ALN-AL80", "harmonyos", 1.5, _HM, False),
    ("LNA-AL00", "harmonyos", 2.0, _HM, False), ("FOA-AL00", "harmonyos", 1.5, _HM, False),
    ("NOH-AN00", "harmonyos", 1.0, _HM, False), ("CTR-AL00", "harmonyos", 1.0, _HM, False),
    ("23127PN0CC", "android", 3.0, _A14, False), ("2211133C", "android", 2.0, _A13, False),
    ("23113RKC6C", "android", 2.0, _A14, False), ("22101316C", "android", 1.8, _A13, False),
    ("2312DRAABC", "android", 1.5, _A14, False), ("M2012K11AC", "android", 1.2, _OLD, False),
    ("22041211AC", "android", 1.2, _A13, False), ("M2006C3LC", "android", 0.6, [("10", 5), ("11", 1)], True),
    ("M2003J15SC", "android", 0.6, [("11", 3), ("12", 2)], True),
    ("PHZ110", "android", 1.5, _A14, False), ("PJD110", "android", 1.5, _A14, False),
    ("PHV110", "android", 1.2, _A13, False), ("PHJ110", "android", 1.0, _A13, True),
    ("PFTM10", "android", 0.8, _OLD, True), ("PCAM00", "android", 0.5, _OLD, True),
    ("V2309A", "android", 1.8, _A14, False), ("V2230A", "android", 1.2, _A13, False),
    ("V2244A", "android", 1.0, _A13, False), ("V2166A", "android", 0.7, _OLD, True),
    ("V2120A", "android", 0.6, _OLD, True),
    ("ALI-AN00", "android", 1.2, _A13, False), ("REA-AN00", "android", 0.8, _A13, False),
    ("ANY-AN00", "android", 0.6, _OLD, True), ("RMX3706", "android", 0.8, _A13, False),
    ("RMX3350", "android", 0.5, _OLD, True), ("SM-S9180", "android", 0.8, _A14, False),
    ("SM-F9460", "android", 0.3, _A14, False), ("NX729J", "android", 0.3, _A13, False),
    ("LE2120", "android", 0.3, _OLD, False), ("MEIZU 20", "android", 0.2, _A13, False),
]
MODEL_PICKER = Picker((i, m[2]) for i, m in enumerate(DEVICE_MODELS))
VERSION_PICKERS = [Picker(m[3]) for m in DEVICE_MODELS]
CHEAP_MODELS = [i for i, m in enumerate(DEVICE_MODELS) if m[4]]
ANDROID_MODELS = [i for i, m in enumerate(DEVICE_MODELS) if m[1] == "android"]
IOS_MODELS = [i for i, m in enumerate(DEVICE_MODELS) if m[1] == "ios"]
#: Models that Android emulators (LDPlayer, MuMu, Nox, BlueStacks) present by default.
EMULATOR_MODELS = [("SM-G955N", "9"), ("ASUS_I005DA", "9"), ("V1938T", "9"), ("PCRT00", "7.1.2"),
                   ("MI 9", "9"), ("SM-N976N", "12"), ("MuMu", "12"), ("2206123SC", "12")]
#: Cloud-phone instance models (ARM servers renting virtual phones).
CLOUD_PHONE_MODELS = [("M2102K1AC", "11"), ("V2055A", "11"), ("ALP-AN00", "10")]

APP_VERSIONS = Picker([("6.12.0", 45), ("6.11.2", 25), ("6.11.0", 12), ("6.10.5", 10), ("6.9.1", 5),
                       ("6.8.0", 3)])


def user_agent(model: str, os: str, os_version: str, net: str, h: int) -> str:
    w, wc = WECHAT_VERSIONS[h % len(WECHAT_VERSIONS)]
    if os == "ios":
        return IOS_UA.format(v=os_version.replace(".", "_"), w=w, wc=wc, n=net)
    if os == "harmonyos":
        return HARMONY_UA.format(m=model, w=w, wc=wc, n=net)
    return ANDROID_UA.format(v=os_version, m=model, b=BUILDS[(h >> 8) % len(BUILDS)],
                             c=110 + (h >> 16) % 12, x=1160000 + (h >> 24) % 300, w=w, wc=wc, n=net)


def real_device(h: int, u_model: float, u_version: float, app_version: str, **flags) -> Device:
    """A genuine-looking device of a model drawn by popularity."""
    mi = MODEL_PICKER.pick(u_model)
    return model_device(mi, h, u_version, app_version, **flags)


def model_device(mi: int, h: int, u_version: float, app_version: str, **flags) -> Device:
    model, os, *_ = DEVICE_MODELS[mi]
    return Device(id=format(h, "016x"), model=model, os=os, os_version=VERSION_PICKERS[mi].pick(u_version),
                  app_version=app_version, **flags)


# ---------------------------------------------------------------------------------------------------
# Prizes

#: Red-packet tiers (yuan, probability): most win small change, a few win big.
PRIZE_TIERS = [(0.3, 0.50), (0.5, 0.22), (0.88, 0.12), (1.88, 0.08), (5.88, 0.05), (18.8, 0.022),
               (88.0, 0.008)]
PRIZE_PICKER = Picker(PRIZE_TIERS)
#: The first claim of a new account pays the new-user red packet.
NEW_USER_TIERS = Picker([(2.0, 0.5), (5.0, 0.35), (8.8, 0.15)])
PRIZE_MEAN = sum(v * p for v, p in PRIZE_TIERS)
#: Product batches carrying one-item-one-codes.
N_BATCHES = 640
