"""IP reputation: operator-supplied CIDR lists (data-centre, proxy, known bad) and address scope.

Lists are merged into sorted, non-overlapping integer intervals and looked up by bisection; results are
cached per address, since campaign traffic repeats its addresses a lot.
"""

from __future__ import annotations

import ipaddress
import socket
from bisect import bisect_right
from functools import lru_cache
from importlib import resources
from pathlib import Path

import msgspec

LIST_NAMES = ("datacenter", "proxy", "bad")


class IpFacts(msgspec.Struct, frozen=True, gc=False):
    """What the lists say of one address. Cached per address by :class:`IpBook` (up to 131k of them): ``gc=False``
    and shared ``lists`` sets keep that cache out of the cyclic garbage collector's walks."""

    valid: bool
    public: bool
    prefix: str | None  # /24 for IPv4, /48 for IPv6
    lists: frozenset[str]


#: One frozenset per combination of list names (a handful), shared by every cached IpFacts.
_HITS: dict[frozenset[str], frozenset[str]] = {}


def _shared(hits: frozenset[str]) -> frozenset[str]:
    return _HITS.setdefault(hits, hits)


def parse_cidrs(text: str, source: str = "<list>") -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            nets.append(ipaddress.ip_network(line, strict=False))
        except ValueError as exc:
            raise ValueError(f"{source}, line {n}: {exc}") from None
    return nets


class _Intervals:
    def __init__(self, nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network]):
        spans = sorted((int(n.network_address), int(n.broadcast_address)) for n in nets)
        merged: list[list[int]] = []
        for lo, hi in spans:
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            else:
                merged.append([lo, hi])
        self.starts = [lo for lo, _ in merged]
        self.ends = [hi for _, hi in merged]

    def __contains__(self, value: int) -> bool:
        i = bisect_right(self.starts, value) - 1
        return i >= 0 and value <= self.ends[i]

    def __len__(self) -> int:
        return len(self.starts)


_inet_pton = socket.inet_pton
_AF_INET = socket.AF_INET


def default_list_text(name: str) -> str:
    return resources.files("woolguard.data").joinpath(f"ip_{name}.txt").read_text("utf-8")


def _ipv4_int(ip: str) -> int | None:
    """A dotted-quad IPv4 address as an int, or None (anything unusual goes to the ipaddress module).

    ``inet_pton`` is strict: exactly four decimal octets of 0-255 in ASCII, no leading zeros, no spaces."""
    try:
        return int.from_bytes(_inet_pton(_AF_INET, ip), "big")
    except (OSError, ValueError, UnicodeError):
        return None


#: Every IANA special-purpose IPv4 block (a superset of what any Python version calls not global): addresses
#: inside go to the ipaddress module for the exact answer, all others are public.
_SPECIAL_V4 = _Intervals([ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12", "192.0.0.0/24",
    "192.0.2.0/24", "192.31.196.0/24", "192.52.193.0/24", "192.88.99.0/24", "192.168.0.0/16", "192.175.48.0/24",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)])


class IpBook:
    def __init__(self, lists: dict[str, str] | None = None):
        """``lists`` maps a list name to CIDR text; by default the lists shipped in the package."""
        if lists is None:
            lists = {name: default_list_text(name) for name in ("datacenter", "proxy")}
        self._lists = {name: (_Intervals([n for n in parse_cidrs(text, name) if n.version == 4]),
                              _Intervals([n for n in parse_cidrs(text, name) if n.version == 6]))
                       for name, text in lists.items()}
        self.facts = lru_cache(maxsize=1 << 17)(self._facts)

    @classmethod
    def from_files(cls, paths: dict[str, str | Path], include_defaults: bool = True) -> IpBook:
        lists = {name: default_list_text(name) for name in ("datacenter", "proxy")} if include_defaults else {}
        for name, path in paths.items():
            extra = Path(path).read_text("utf-8")
            lists[name] = lists.get(name, "") + "\n" + extra
        return cls(lists)

    def _facts(self, ip: str) -> IpFacts:
        value = _ipv4_int(ip)
        if value is not None and value not in _SPECIAL_V4:  # the common case, without an ipaddress object
            hits = frozenset(name for name, (v4, _) in self._lists.items() if value in v4)
            return IpFacts(True, True, ip.rsplit(".", 1)[0], _shared(hits))
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return IpFacts(False, False, None, _shared(frozenset()))
        value = int(addr)
        if addr.version == 4:
            prefix = ip.rsplit(".", 1)[0]
            hits = frozenset(name for name, (v4, _) in self._lists.items() if value in v4)
        else:
            prefix = str(ipaddress.ip_network(f"{addr}/48", strict=False).network_address)
            hits = frozenset(name for name, (_, v6) in self._lists.items() if value in v6)
        return IpFacts(True, addr.is_global, prefix, _shared(hits))
