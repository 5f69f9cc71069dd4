"""Running edgeact's own inference loop on a device over SSH.

The desktop side needs only OpenSSH's `ssh` client (so ~/.ssh/config aliases, keys and the
agent work as they do for the user); the device needs Python, numpy and a TFLite runtime.
Nothing else is installed there: the device-side code travels as a zip in a per-user,
content-addressed cache folder.

May import: the core, `edgeact.formats`, `edgeact.data`, `edgeact.runtime`, `edgeact.measure`.
"""
from .target import DeviceSpec, parse_device

__all__ = ["DeviceSpec", "parse_device"]
