"""Outbound policy: which URLs the hub may open on a caller's behalf (camera streams, webhooks).

A caller who can add a camera or a webhook chooses where the hub connects. Without a policy that
turns the hub into a proxy into its own network (cloud metadata, Ray's job API on loopback, the
city's private hosts). So every outbound URL passes `OutboundPolicy.check`:

- the scheme is one the purpose allows (cameras: rtsp/rtsps, http(s) MJPEG only when enabled;
  webhooks: https, http only when enabled);
- the host name is resolved and **every** address it resolves to must be public, unless the
  config's allow-list names the host or a CIDR holding the address (loopback, link-local incl.
  169.254.169.254, private, CGNAT, multicast and reserved addresses are refused by default);
- the check runs again on each reconnect, and `Destination.pinned_url` lets an opener connect to
  the address that was checked (no second DNS answer in between: DNS rebinding).

>>> policy = OutboundPolicy(allow=("10.20.0.0/16", "cam17.city.lan"))
>>> policy.check_camera("rtsp://10.20.3.4/s1").addresses
('10.20.3.4',)
>>> policy.check_camera("rtsp://127.0.0.1/s1")      # InvalidInput (400): loopback is not allowed
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from hub.errors import InvalidInput
from hub.redact import redact_url

CAMERA_SCHEMES = frozenset({"rtsp", "rtsps"})
CAMERA_HTTP_SCHEMES = frozenset({"http", "https"})
WEBHOOK_SCHEMES = frozenset({"https"})
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# FFmpeg options a caller may set on a camera, with the values each accepts. Everything else is
# refused: `method`, `post_data`, `headers`, `user_agent`, `cookies`, `http_proxy`, `protocol_whitelist`
# and friends turn the reader into an HTTP client the caller drives.
_NUMBER = r"\d{1,12}"
FFMPEG_OPTIONS: dict[str, str] = {
    "rtsp_transport": r"(tcp|udp|udp_multicast|http|https)(\+(tcp|udp|udp_multicast|http|https))*",
    "rtsp_flags": r"(prefer_tcp|filter_src)(\+(prefer_tcp|filter_src))*",
    "stimeout": _NUMBER,
    "timeout": _NUMBER,
    "rw_timeout": _NUMBER,
    "buffer_size": _NUMBER,
    "max_delay": _NUMBER,
    "reorder_queue_size": _NUMBER,
    "probesize": _NUMBER,
    "analyzeduration": _NUMBER,
    "fflags": r"[+-]?(nobuffer|discardcorrupt|genpts|igndts|ignidx)([+-](nobuffer|discardcorrupt|genpts|igndts|ignidx))*",
    "allowed_media_types": r"(video|audio|data|subtitle)(\+(video|audio|data|subtitle))*",
}


def check_ffmpeg_options(options: dict[str, str]) -> dict[str, str]:
    """Refuse any FFmpeg option outside `FFMPEG_OPTIONS`, or a value of the wrong form, naming it."""
    for name, value in options.items():
        pattern = FFMPEG_OPTIONS.get(name)
        if pattern is None:
            raise InvalidInput(f"FFmpeg option {name!r} is not allowed (allowed: {', '.join(sorted(FFMPEG_OPTIONS))})",
                               field=f"options.{name}")
        if not re.fullmatch(pattern, str(value)):
            raise InvalidInput(f"FFmpeg option {name!r} has an invalid value {str(value)[:40]!r}", field=f"options.{name}")
    return options


@dataclass(frozen=True)
class Destination:
    """A URL that passed the policy, with the addresses its host resolved to at check time."""

    url: str
    scheme: str
    host: str
    port: int
    addresses: tuple[str, ...]

    def pinned_url(self) -> str:
        """The URL with the host replaced by the first checked address (plain rtsp only: TLS needs
        the name for SNI and certificate checks, and http(s) for virtual hosts)."""
        if self.scheme != "rtsp" or not self.addresses or self.host == self.addresses[0]:
            return self.url
        parts = urlsplit(self.url)
        address = self.addresses[0]
        host = f"[{address}]" if ":" in address else address
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = (f"{userinfo}@" if userinfo else "") + host + (f":{parts.port}" if parts.port else "")
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def address_kind(address: IpAddress) -> str | None:
    """Why an address is not public ("loopback", "link-local", ...), or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback too
    checks = (("loopback", address.is_loopback), ("link-local", address.is_link_local),
              ("unspecified", address.is_unspecified), ("multicast", address.is_multicast),
              ("private", address.is_private), ("reserved", address.is_reserved))
    for kind, hit in checks:
        if hit:
            return kind
    return None if address.is_global else "non-global"


def resolve(host: str, port: int) -> tuple[str, ...]:
    """Every address `host` resolves to (a literal IP resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise InvalidInput(f"host {host!r} does not resolve: {exc.__class__.__name__}", field="url") from None
    return tuple(dict.fromkeys(info[4][0].split("%", 1)[0] for info in infos))


@dataclass(frozen=True)
class OutboundPolicy:
    """Where cameras and webhooks may connect. `allow`: CIDRs (`10.20.0.0/16`, `127.0.0.1/32`) and
    host names (`cam17.city.lan`, or `*.city.lan` for a whole domain) admitted although private."""

    allow: tuple[str, ...] = ()
    camera_http: bool = False  # MJPEG cameras over http(s)
    webhook_http: bool = False  # plain-http webhook receivers (https is always allowed)

    def __post_init__(self) -> None:
        nets, names = [], []
        for item in self.allow:
            try:
                nets.append(ipaddress.ip_network(item.strip(), strict=False))
            except ValueError:
                names.append(item.strip().lower().rstrip("."))
        object.__setattr__(self, "_networks", tuple(nets))
        object.__setattr__(self, "_names", tuple(names))

    # -- purposes ----------------------------------------------------------------------------------
    def check_camera(self, url: str, *, field: str = "url") -> Destination:
        schemes = CAMERA_SCHEMES | (CAMERA_HTTP_SCHEMES if self.camera_http else frozenset())
        return self.check(url, schemes, purpose="camera", field=field)

    def check_webhook(self, url: str, *, field: str = "webhooks") -> Destination:
        schemes = WEBHOOK_SCHEMES | ({"http"} if self.webhook_http else frozenset())
        return self.check(url, schemes, purpose="webhook", field=field)

    # -- the check ---------------------------------------------------------------------------------
    def check(self, url: str, schemes: Iterable[str], *, purpose: str, field: str = "url") -> Destination:
        shown = redact_url(url)
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise InvalidInput(f"{purpose} URL {shown!r} is malformed: {exc}", field=field) from None
        scheme = parts.scheme.lower()
        allowed = sorted(schemes)
        if scheme not in allowed:
            raise InvalidInput(f"{purpose} URL scheme {scheme or '(none)'}:// is not allowed; use "
                               f"{' or '.join(s + '://' for s in allowed)}", field=field)
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise InvalidInput(f"{purpose} URL {shown!r} has no host", field=field)
        port = port or _DEFAULT_PORTS.get(scheme, 0)
        addresses = resolve(host, port)
        if not self._name_allowed(host):
            for text in addresses:
                self._check_address(host, text, purpose, field)
        return Destination(url=url, scheme=scheme, host=host, port=port, addresses=addresses)

    def _name_allowed(self, host: str) -> bool:
        names = self._names  # type: ignore[attr-defined]
        return any(host == name or (name.startswith("*.") and host.endswith(name[1:])) for name in names)

    def _check_address(self, host: str, text: str, purpose: str, field: str) -> None:
        address = ipaddress.ip_address(text)
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        kind = address_kind(address)
        if kind is None:
            return
        if any(address in net for net in self._networks):  # type: ignore[attr-defined]
            return
        via = "" if host == text else f" ({host} resolves to {text})"
        raise InvalidInput(f"{purpose} destination {text} is not public ({kind}){via}; the hub does not connect "
                           "there unless the streams config's `outbound.allow` lists it", field=field)
