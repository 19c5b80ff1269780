"""Pure parsers for configuration values: sizes, durations, listen addresses, base URLs.

Each raises ValueError with a message that ``ConfigError`` prefixes with the key path;
none of them reads the environment or the file system.
"""

from __future__ import annotations

import ipaddress
import math
import re
from urllib.parse import urlsplit

__all__ = [
    "is_loopback_host",
    "parse_duration",
    "parse_listen",
    "parse_size",
    "split_base_url",
]

# A decimal number and an optional unit, both sizes and durations: "64 KiB", "1.5s".
_NUMBER_UNIT_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}
# Duration units as (numerator, denominator) of a second.
_DURATION_UNITS = {
    "": (1, 1),
    "ms": (1, 1000),
    "s": (1, 1),
    "m": (60, 1),
    "h": (3600, 1),
}


def _exact(number: str) -> tuple[int, int]:
    """A decimal literal (``"1.5"``) as an exact fraction (numerator, denominator):
    no float rounding, and no ``fractions`` import (0.6 MiB of the daemon's memory)."""
    whole, _, frac = number.partition(".")
    return int(whole + frac), 10 ** len(frac)
_PORT_RE = re.compile(r"[0-9]{1,5}")


def parse_size(value: object) -> int:
    """Bytes from an int or a string like ``"64KiB"``, ``"32 MiB"``, ``"1.5MB"``.

    Units (case-insensitive): B, KB, MB, GB (powers of 1000) and KiB, MiB, GiB (powers
    of 1024); no unit means bytes.
    The result must be a whole number of bytes. Raises ValueError("bad size ...").
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        m = _NUMBER_UNIT_RE.fullmatch(value)
        if m is not None:
            unit = _SIZE_UNITS.get(m[2].lower())
            if unit is not None:
                num, den = _exact(m[1])
                n, rest = divmod(num * unit, den)
                if not rest:
                    return n
    raise ValueError(
        f"bad size {value!r} (use bytes or a number with B, KB, MB, GB, KiB, MiB, GiB)"
    )


def parse_duration(value: object) -> float:
    """Seconds from a number or a string: ``"500ms"``, ``"30s"``, ``"5m"``, ``"1h"``.

    Raises ValueError("bad duration ...").
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    elif isinstance(value, str):
        m = _NUMBER_UNIT_RE.fullmatch(value)
        if m is not None:
            unit = _DURATION_UNITS.get(m[2].lower())
            if unit is not None:
                num, den = _exact(m[1])
                return num * unit[0] / (den * unit[1])
    raise ValueError(
        f"bad duration {value!r} (use seconds or a number with ms, s, m, h)"
    )


def parse_listen(value: object) -> tuple[str, int]:
    """``"HOST:PORT"`` or ``"[IPv6]:PORT"`` -> (host, port), IPv6 hosts unbracketed."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string HOST:PORT (got {value!r})")
    text = value.strip()
    if text.startswith("["):
        host, port_text = _split_bracketed(text, value)
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(
                f"bad listen address {value!r} "
                "(expected HOST:PORT, e.g. 127.0.0.1:8081)"
            )
        if ":" in host:
            raise ValueError(
                f"bad listen address {value!r} "
                "(put IPv6 addresses in brackets, e.g. [::1]:8081)"
            )
        if any(c.isspace() or c in "/[]@" for c in host):
            raise ValueError(f"bad host in listen address {value!r}")
    if not _PORT_RE.fullmatch(port_text):
        raise ValueError(f"bad port in listen address {value!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port must be 0..65535 (got {port})")
    return host, port


def _split_bracketed(text: str, value: str) -> tuple[str, str]:
    """``"[IPv6]:PORT"`` -> (IPv6 host, port text); ``value`` is echoed in errors."""
    end = text.find("]")
    if end < 0 or text[end + 1 : end + 2] != ":":
        raise ValueError(
            f"bad listen address {value!r} (expected [IPv6]:PORT, e.g. [::1]:8081)"
        )
    host = text[1:end]
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        raise ValueError(f"bad IPv6 address in {value!r}") from None
    return host, text[end + 2 :]


def split_base_url(url: str) -> tuple[str, str, int, str]:
    """``base_url`` -> (scheme, host, port, base_path), validated.

    ``host`` is lowercased and unbracketed (ready for connect and SNI), ``port``
    defaults to the scheme's, ``base_path`` is the path without its trailing slash
    ("" for a bare host). Raises ValueError; messages never echo a URL that may carry
    credentials.
    """
    if not isinstance(url, str):
        raise ValueError(f"must be a string URL (got {type(url).__name__})")
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in url):
        raise ValueError("must not contain whitespace or control characters")
    parts = urlsplit(url)
    # Checked before anything echoes the URL: both can carry secrets (Gemini's ?key=).
    if "@" in parts.netloc:
        raise ValueError("must not contain credentials; use api_key_env or api_key")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError(
            "must not have a query string or fragment; use headers or api_key"
        )
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https (got {url!r})")
    host = parts.hostname
    if not host:
        raise ValueError(f"needs a host (got {url!r})")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    elif port == 0:
        raise ValueError(f"bad port in {url!r}")
    return scheme, host, port, parts.path.rstrip("/")


def is_loopback_host(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 (also bracketed or IPv4-mapped) and ``localhost``."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h.rstrip(".").lower() == "localhost":
        return True
    try:
        addr = ipaddress.ip_address(h)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped.is_loopback
    return addr.is_loopback
