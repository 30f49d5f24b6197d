"""Value templates that read one field of the `latest` document, or render nothing.

How Home Assistant treats what a template renders (mqtt/sensor.py, `_update_state`):
- "" on a sensor it expects to be numeric (one with a device class other than
  timestamp/enum/date, a state class, a unit or a display precision) is ignored: the
  previous state stays. That is what a null register must do, so a null never becomes
  a zero or a reset on a total_increasing sensor.
- "None" sets the state to unknown; used for timestamp sensors, which have no history
  to protect and would log a parse warning on "".

`is number` rather than `is not none`: anything that is not a number (a missing key, a
null) renders nothing. Keys are read with subscripts, never attributes, because `import`
is a keyword in Jinja and attribute lookup on a dict could hit a dict method. Every
intermediate level is checked with `is mapping`, so a null block (`capacity` on a Dutch
meter) renders nothing instead of logging a template error.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from p1daemon.reading.model import MbusDevice

_PLAIN = re.compile(r"^[A-Za-z0-9_. -]*$")


def _literal(text: str) -> str:
    if _PLAIN.match(text):
        return f"'{text}'"
    # Anything else (quotes, backslashes, braces in an equipment id): a JSON string
    # literal, which Jinja reads with the same escapes.
    return json.dumps(text)


def _walk(path: Sequence[str]) -> str:
    steps = "{% set v = value_json %}"
    for key in path:
        steps += f"{{% set v = v[{_literal(key)}] if v is mapping else none %}}"
    return steps


def number(path: Sequence[str]) -> str:
    return _walk(path) + "{{ v if v is number else '' }}"


def timestamp(path: Sequence[str]) -> str:
    return _walk(path) + "{{ v if v is string and v else 'None' }}"


def _select(device: MbusDevice) -> str:
    """The device's entry in `mbus`, found by what it is, not by the channel it sits on.

    Channels follow installation order and can change when a device is added; the
    equipment id cannot. Only a device that sends no equipment id is found by channel
    and medium.
    """
    if device.equipment_id is not None:
        chain = f"selectattr('equipment_id', 'eq', {_literal(device.equipment_id)})"
    else:
        chain = f"selectattr('channel', 'eq', {device.channel})"
        if device.device_type is not None:
            chain += f" | selectattr('device_type', 'eq', {device.device_type})"
    return (
        "{% set d = value_json['mbus'] if value_json is mapping else none %}"
        f"{{% set d = d | {chain} | first if d is sequence else none %}}"
    )


def mbus(device: MbusDevice, field: str, *, numeric: bool) -> str:
    body = _select(device) + f"{{% set v = d[{_literal(field)}] if d is mapping else none %}}"
    if numeric:
        return body + "{{ v if v is number else '' }}"
    return body + "{{ v if v is string and v else 'None' }}"
