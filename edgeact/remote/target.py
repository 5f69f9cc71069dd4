"""`[user@]host[:port]` device specifications, validated so nothing odd reaches ssh's argv."""
from __future__ import annotations

import re
from dataclasses import dataclass

from edgeact.errors import InputError

# Host names, ssh config aliases, IPv4 and bracketed IPv6; user names. No leading '-': an
# argument that starts with '-' would be read by ssh as an option.
_HOST = r"(?P<host>[A-Za-z0-9_][A-Za-z0-9._-]*|\[[0-9A-Fa-f:.]+\])"
_SPEC = re.compile(rf"^(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?{_HOST}(?::(?P<port>[0-9]{{1,5}}))?$")


@dataclass(frozen=True)
class DeviceSpec:
    """Where a device is: host (or ssh config alias), optional user and port."""

    host: str
    user: str | None = None
    port: int | None = None

    @property
    def destination(self) -> str:
        """What ssh gets as its destination argument (an IPv6 address without its brackets)."""
        host = self.host[1:-1] if self.host.startswith("[") else self.host
        return f"{self.user}@{host}" if self.user else host

    def __str__(self) -> str:
        text = f"{self.user}@{self.host}" if self.user else self.host
        return f"{text}:{self.port}" if self.port else text


def parse_device(text: str) -> DeviceSpec:
    """Parse `[user@]host[:port]`; raise InputError naming the problem otherwise."""
    match = _SPEC.match(text.strip())
    if not match:
        raise InputError(
            f"device '{text}' is not of the form [user@]host[:port] (letters, digits, '.', '_', '-'); "
            "use an ssh config alias for anything more"
        )
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise InputError(f"device '{text}' has port {port}, outside 1..65535")
    return DeviceSpec(host=match.group("host"), user=match.group("user"), port=int(port) if port else None)
