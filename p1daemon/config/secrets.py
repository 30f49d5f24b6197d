"""Which configuration keys are secret: the one rule that errors, display and logs share.

A key is secret when its dataclass declares it a `Secret` (today `[mqtt] password` and a
meter's `key` and `auth_key`). Deriving the set from the models means a secret field
added later is masked everywhere without anyone remembering a list. `*_file` keys are
paths, not secrets, and are shown; the password a `password_file` holds is a secret
and is handed to log redaction like the others.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from p1daemon.config.model import SECTIONS
from p1daemon.config.secret import Secret
from p1daemon.config.section import Section, field_default
from p1daemon.service.redact import MIN_SECRET_LENGTH

if TYPE_CHECKING:
    from p1daemon.config.model import Config

Loc = tuple[str | int, ...]

NOT_SHOWN = "value not shown: it is a secret"


def _is_secret_type(annotation: Any) -> bool:
    if annotation is Secret:
        return True
    return any(_is_secret_type(arg) for arg in typing.get_args(annotation))


def _secret_fields(table: type[Section]) -> frozenset[str]:
    hints = typing.get_type_hints(table)
    return frozenset(name for name, annotation in hints.items() if _is_secret_type(annotation))


# Section name (as in the file) -> its secret keys.
SECRET_FIELDS: Mapping[str, frozenset[str]] = {
    section: fields for section, model in SECTIONS.items() if (fields := _secret_fields(model))
}


def is_secret(loc: Loc) -> bool:
    """Whether an error location (("meters", 0, "key"), ("mqtt", "password")) is a secret."""
    if not loc or not isinstance(loc[0], str) or loc[0] not in SECRET_FIELDS:
        return False
    names = [part for part in loc[1:] if isinstance(part, str)]
    return bool(names) and names[0] in SECRET_FIELDS[loc[0]]


def _public(section: str, name: str, value: str) -> bool:
    """Values of a secret key that are not secret: "none" and the default of `auth_key`
    (the published Smarty authentication key, printed in every manual)."""
    if section == "meters" and name == "auth_key":
        default = field_default(SECTIONS["meters"], "auth_key")
        return value.lower() == "none" or value.upper() == default.get_secret_value().upper()
    return False


def secret_items(config: Config) -> list[tuple[str, str]]:
    """(key path, value) of every secret in use, including the password in `password_file`.

    A `password_file` that cannot be read is left out: `load_config` has already said
    so, and the publisher reads the file again at connect time.
    """
    items: list[tuple[str, str]] = []
    for section, names in SECRET_FIELDS.items():
        value = getattr(config, section)
        tables = list(enumerate(value)) if isinstance(value, list) else [(None, value)]
        for index, table in tables:
            where = section if index is None else f"{section}[{index}]"
            for name in sorted(names):
                secret = getattr(table, name)
                if secret is None:
                    continue
                text = secret.get_secret_value()
                if text and not _public(section, name, text):
                    items.append((f"{where}.{name}", text))
    mqtt = config.mqtt
    if mqtt.password is None and mqtt.password_file is not None:
        try:
            from_file = mqtt.resolved_password()
        except (OSError, ValueError):
            from_file = None
        if from_file:
            items.append(("mqtt.password_file", from_file))
    return items


def short_secret_warnings(config: Config) -> list[str]:
    """One line per secret too short for log redaction (see `p1daemon.service.redact`)."""
    lines = []
    for where, value in secret_items(config):
        if len(value) < MIN_SECRET_LENGTH:
            what = f"{where} holds a password" if where.endswith("_file") else f"{where} is"
            lines.append(
                f"{what} shorter than {MIN_SECRET_LENGTH} characters: too short to be masked "
                "in log lines; use a longer one"
            )
    return lines
