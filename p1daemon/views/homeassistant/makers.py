"""A meter's header line, made readable for a Home Assistant device page.

A P1 header is `/XXXZ<ident>`: a three-letter FLAG manufacturer id, the baud-rate
character and the manufacturer's own identification, which often starts with IEC
62056-21's `\\W` enhanced-identification pair (`/ISk5\\2MT382-1000`). Home Assistant
shows `manufacturer` and `model` on the device page, where "ISk" and "ISk5\\2MT382-1000"
mean nothing to most users, so the flag becomes a name and the model loses its framing.

The tables hold only what the captures in the field and the protocol notes support; an
unknown flag is shown as sent. A lower-case third letter (`ISk`) only marks a meter with
a short reaction time (IEC 62056-21), so flags are compared case-insensitively.

Some flags belong to a grid operator rather than to a maker (Enexis's `Ene`, Fluvius's
`FLU`): the meter under them can come from several factories, so they name a maker only
where the model says which one it is (`MODELS`), and stay the flag otherwise.
"""

from __future__ import annotations

import re

# FLAG id (upper case) -> manufacturer
FLAGS: dict[str, str] = {
    "ISK": "Iskraemeco",
    "KFM": "Kaifa",
    "KAM": "Kamstrup",
    "KMP": "Kamstrup",
    "LGB": "Landis+Gyr",
    "LGF": "Landis+Gyr",
    "LGZ": "Landis+Gyr",
    "SAG": "Sagemcom",
    "XMX": "Xemex",
    "ESY": "EasyMeter",
}

# (FLAG id, start of the model) -> manufacturer, where the model names the maker better
# than the flag: Landis+Gyr's E350 under the Xemex flag, the Sagemcom and Landis+Gyr
# meters Enexis installs under its own.
MODELS: dict[tuple[str, str], str] = {
    ("XMX", "LGB"): "Landis+Gyr",
    ("ENE", "T210"): "Sagemcom",
    ("ENE", "T211"): "Sagemcom",
    ("ENE", "XS210"): "Landis+Gyr",
}

_HEADER = re.compile(r"^/?(?P<flag>[A-Za-z]{3})(?P<baud>[0-9A-Za-z])(?P<ident>.*)$", re.DOTALL)
_ENHANCED = re.compile(r"^\\[0-9](?=[A-Za-z])")


def split_header(header: str) -> tuple[str | None, str]:
    """(flag, readable model) of a header; (None, header) when it has no FLAG shape."""
    match = _HEADER.match(header.strip())
    if match is None:
        return None, header.strip()
    ident = _ENHANCED.sub("", match.group("ident")).lstrip("\\").strip()
    return match.group("flag"), ident


def manufacturer_name(header: str, flag: str | None) -> str | None:
    """The maker's name where the flag (or the model under it) is known, else the flag."""
    if flag is None:
        return None
    _, model = split_header(header)
    key = flag.upper()
    for (model_flag, start), name in MODELS.items():
        if model_flag == key and model.upper().startswith(start):
            return name
    return FLAGS.get(key, flag)


def model_name(header: str) -> str:
    """The header without '/', flag, baud character and `\\W` pair; the header if that
    leaves nothing (`/EST5`)."""
    _, model = split_header(header)
    return model or header.strip().lstrip("/")
