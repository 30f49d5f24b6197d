"""A secret value from the configuration (an MQTT password, a Smarty key).

The running daemon holds its configuration without pydantic (see
`p1daemon.config.section`), so it cannot hold pydantic's `SecretStr`; this is the same
promise in a few lines: printing, logging or `repr` of the settings never shows the
value, only `get_secret_value()` does.
"""

from __future__ import annotations

MASK = "**********"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __str__(self) -> str:
        return MASK if self._value else ""

    def __repr__(self) -> str:
        return f"Secret('{self}')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    # Slotted: pickle needs to be told what the state is (the validating child process
    # hands the configuration over pickled, see p1daemon.config.apart).
    def __getstate__(self) -> str:
        return self._value

    def __setstate__(self, state: str) -> None:
        self._value = state
