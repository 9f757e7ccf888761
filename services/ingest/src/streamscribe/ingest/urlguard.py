"""Refuse URLs that would make ingest fetch from the networks it runs in (SSRF).

A URL passes when it is http(s), carries no credentials, and its host has only public addresses.
Hosts written as IP literals are recognised in every spelling resolvers accept (`2130706433`,
`0x7f.1`, `[::ffff:7f00:1]`, ...), and names are resolved here with every address checked,
because the downloader may connect to any of them; the addresses checked are returned so that
the caller connects to one of them and never resolves the name again (DNS rebinding). The egress
proxy (egress.py) repeats the check on every hop, since a public page may point anywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import SplitResult, unquote, urlsplit

from streamscribe.common.errors import MediaError
from streamscribe.common.events import Reason
from streamscribe.ingest.settings import IngestSection

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES = frozenset({"http", "https"})
_ALLOW_HINT = (
    "set STREAMSCRIBE_INGEST__ALLOW_PRIVATE_NETWORKS=true, or add the host to "
    "STREAMSCRIBE_INGEST__ALLOWED_HOSTS, to allow it"
)
_SHOWN_LENGTH = 200
_METADATA = ipaddress.IPv4Address("169.254.169.254")
_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.IPv6Network("fc00::/7")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")

# Checked in order, so that an address gets its most telling name. Python's own `is_global`
# still calls some of these global (multicast, site-local), hence the explicit list.
_REFUSED_KINDS: list[tuple[str, Callable[[IPAddress], bool]]] = [
    ("unspecified", lambda a: a.is_unspecified or a in _THIS_NETWORK),
    ("loopback", lambda a: a.is_loopback),
    ("link-local (the cloud metadata endpoint)", lambda a: a == _METADATA),
    ("link-local", lambda a: a.is_link_local),
    ("multicast", lambda a: a.is_multicast),
    ("shared address space (carrier-grade NAT)", lambda a: a in _SHARED),
    ("site-local", lambda a: isinstance(a, ipaddress.IPv6Address) and a.is_site_local),
    ("unique-local", lambda a: a in _UNIQUE_LOCAL),
    ("reserved", lambda a: a.is_reserved),
    ("private", lambda a: a.is_private),
    ("not globally routable", lambda a: not a.is_global),
]


@dataclass(frozen=True)
class UrlPolicy:
    """What ingest may fetch; the defaults refuse everything but the public internet."""

    allow_private_networks: bool = False
    allowed_hosts: frozenset[str] = frozenset()  # host names or IPs exempt from the address checks


def url_policy(section: IngestSection) -> UrlPolicy:
    """The policy ingest's settings give (the API vets submitted and callback URLs with it)."""
    return UrlPolicy(
        allow_private_networks=section.allow_private_networks,
        allowed_hosts=frozenset(section.allowed_hosts),
    )


def check_url(url: str, policy: UrlPolicy) -> list[IPAddress]:
    """Raise MediaError(REFUSED_URL) unless `url` is an http(s) URL to an acceptable host;
    return the host's addresses, each checked."""
    parts = _split(url)
    vetted = (
        _scheme_problem(parts) or _authority_problem(parts) or _vet_host(parts.hostname, policy)
    )
    if isinstance(vetted, str):
        raise MediaError(Reason.REFUSED_URL, f"refused {_shown(parts)}: {vetted}")
    return vetted


def check_address(host: str, policy: UrlPolicy) -> list[IPAddress]:
    """Raise MediaError(REFUSED_URL) unless every address of `host` is acceptable; return them.

    `host` is a name or an IP literal in any spelling, with or without IPv6 brackets. Whoever
    connects should connect to one of the returned addresses rather than resolve the name again:
    a second answer may differ from the one checked (DNS rebinding).
    """
    vetted = _vet_host(host.removeprefix("[").removesuffix("]"), policy)
    if isinstance(vetted, str):
        raise MediaError(Reason.REFUSED_URL, f"refused host {host[:_SHOWN_LENGTH]}: {vetted}")
    return vetted


def _split(url: str) -> SplitResult:
    try:
        parts = urlsplit(url.strip())
        parts.port  # noqa: B018 - parsing the port is what validates it
    except ValueError as exc:
        raise MediaError(Reason.REFUSED_URL, f"refused a malformed URL: {exc}") from exc
    return parts


def _scheme_problem(parts: SplitResult) -> str | None:
    if parts.scheme.lower() in _SCHEMES:
        return None
    if not parts.scheme:
        return "the URL has no scheme; only http and https URLs are fetched"
    return f"only http and https URLs are fetched, not {parts.scheme}: URLs"


def _authority_problem(parts: SplitResult) -> str | None:
    if "@" in parts.netloc:
        return "URLs with credentials (user:password@) are not allowed"
    # Parsers disagree on where such a host ends, so what is checked may not be what is fetched.
    if any(ch.isspace() or ch == "\\" or not ch.isprintable() for ch in parts.netloc):
        return "the host part contains whitespace, control characters or backslashes"
    if not parts.hostname:
        return "the URL has no host"
    return None


def _normalise_host(host: str) -> str:
    """The host as resolvers see it: percent-decoded, IDNA-encoded, lower case, no final dot."""
    host = unquote(host).lower().rstrip(".")
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host  # _host_problem refuses it


def _host_problem(host: str) -> str | None:
    if not host or not host.isascii() or not host.isprintable() or " " in host:
        return f"host {host!r} is not a valid host name or address"
    return None


def _vet_host(host: str | None, policy: UrlPolicy) -> list[IPAddress] | str:
    """Every address of `host` (resolved once) if each is acceptable, else why not."""
    host = _normalise_host(host or "")
    problem = _host_problem(host)
    if problem is not None:
        return problem
    literal = _parse_literal(host)
    addresses = [literal] if literal is not None else _resolve(host)
    if isinstance(addresses, str):
        return addresses
    allowed = {_canonical(h) for h in policy.allowed_hosts}
    if policy.allow_private_networks or _canonical(host) in allowed:
        return addresses
    for address in addresses:
        kind = _refused_kind(address)
        if kind is None or str(address) in allowed:
            continue
        if literal is not None:
            written = "" if host == str(literal) else f" (written {host})"
            return f"address {literal}{written} is {kind}; {_ALLOW_HINT}"
        return f"host {host} resolves to {address}, which is {kind}; {_ALLOW_HINT}"
    return addresses


def _canonical(host: str) -> str:
    """One spelling per host, so that allowed_hosts matches however the URL writes it."""
    bare = _normalise_host(host.strip().removeprefix("[").removesuffix("]"))
    literal = _parse_literal(bare)
    return bare if literal is None else str(literal)


def _parse_literal(host: str) -> IPAddress | None:
    """The address `host` spells, in any form a resolver accepts, or None for a name."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    try:
        # inet_aton, like getaddrinfo, reads the legacy forms: 127.1, 0x7f.0.0.1, 017700000001.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def _resolve(host: str) -> list[IPAddress] | str:
    """Every address of `host`, or why it cannot be resolved."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return f"cannot resolve host {host} ({reason}); check the URL"
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def _refused_kind(address: IPAddress) -> str | None:
    """What kind of non-public address this is, or None for a public one."""
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in _embedded_ipv4(address):
            kind = _refused_kind(embedded)
            if kind is not None:
                return f"an IPv6 form of {embedded}, which is {kind}"
        if address.ipv4_mapped is not None:
            return None  # a connection to it goes to the public IPv4 address it maps
    return next((name for name, matches in _REFUSED_KINDS if matches(address)), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses that mapped, compatible, NAT64, 6to4 and Teredo forms carry."""
    embedded = [address.ipv4_mapped, address.sixtofour, *(address.teredo or ())]
    # :: and ::1 sit in the compatible range but are themselves unspecified and loopback.
    if (address in _IPV4_COMPATIBLE and int(address) > 1) or address in _NAT64:
        embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF))
    return [a for a in embedded if a is not None]


def _shown(parts: SplitResult) -> str:
    """The URL for a message: credentials masked, clipped to a readable length."""
    _, at, hostport = parts.netloc.rpartition("@")
    shown = parts._replace(netloc=f"***@{hostport}" if at else hostport).geturl()
    return shown if len(shown) <= _SHOWN_LENGTH else shown[:_SHOWN_LENGTH] + "..."
