"""A JSON writer for one document shape: the document's JSON as constant text with holes.

Why: a meter's readings have the same shape telegram after telegram (the same nested
documents, the same None pattern, the same list lengths, the same keys in `other`); only
the numbers, the clock and a few strings change. The general encoder
(p1daemon/reading/encode.py) still walks that shape anew for every reading: a callback for
every nested document and datetime, a lookup for every key. A writer made for the shape
checks it with a few C-level comparisons per part (the keys in order, the type of every
value) and formats only the values, into one f-string.

Why it writes what the general encoder writes: every hole's text is a function of its
value's exact type and value, the same function the general encoder applies to that type
(`repr` of an int or a float, the same escaping of a string, the same datetime text, the
same constants for None, True and False); everything else (keys, punctuation, nested
documents, empty lists) is constant for the shape. A value of another type, another key
order or list length is a mismatch: the writer returns None and the caller takes the general
path. Floats are written by the general encoder's own rules (`repr`, but for a negative
exponent, NaN and infinities), from texts it keeps. A new writer is also checked against
the general encoder's text of the document it was made from before it is used.

A datetime's text is kept by the writer, one per place in the shape: the datetime that
came there last and its text. What repeats from telegram to telegram is the object in its
place (the parser hands out the same datetime for a power-failure log entry, an M-Bus
capture time or a capacity peak until it changes), and an aware datetime's `isoformat`
costs some 1.4 us here, twenty times the check; the meter's clock, new in every telegram,
only replaces its own place's text, so nothing piles up and nothing is ever cleared.

The generated source holds names, `return None`, punctuation and the document classes'
own field names (the code's text, never a telegram's); every other key and constant text
(which may come from a telegram: the keys of `other`) and every type is a constant of the
writer's namespace, so no byte of a telegram is ever compiled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from math import copysign
from typing import Any

from p1daemon.reading.doc import Doc

Writer = Callable[[Doc], str | None]

# Holes per writer at most: a document with long lists is not worth a writer of its own.
_MOST_HOLES = 400


class Unsupported(Exception):
    """The document holds a value no writer formats: it keeps the general path."""


class _Source:
    """The writer being generated: its checks, its text's parts and its namespace.

    Its body first takes the document apart (every dict's values, every list, unpacked
    to names: a count that differs raises), then checks the whole shape at once: every
    key of every dict in order (one list of them all) and every value's exact type (one
    tuple of `type(name)`, which the interpreter specialises: half the cost of `map`),
    each compared with the shape's in one C-level comparison. A document of another shape
    fails there (or raises while being taken apart, which the caller treats as a mismatch
    too).
    """

    def __init__(self, escape: Callable[[str], str]) -> None:
        self._escape = escape
        self.lines: list[str] = []
        self.parts: list[str] = []  # literals of one string: '"key":', f'{INTS[v7]}' ...
        self.namespace: dict[str, Any] = {}
        self.keys: list[str] = []  # dicts (and empty lists) whose items must be `key_items`
        self.key_items: list[object] = []
        self.typed: list[str] = []  # names whose values' exact types must be `types`
        self.types: list[type] = []
        self._text: list[str] = []  # constant text not yet given a name
        self._names = 0
        self.holes = 0
        self.datetimes = 0  # places of datetimes: each keeps its last datetime's text
        self.after_check: list[str] = []  # lines that need the shape checked first

    def name(self) -> str:
        self._names += 1
        return f"v{self._names}"

    def constant(self, value: object) -> str:
        name = f"k{len(self.namespace)}"
        self.namespace[name] = value
        return name

    def text(self, text: str, *, literal: bool = True) -> None:
        """Constant text: a literal of the source when it is the code's own (punctuation,
        the names of the document classes' fields), else a namespace constant (a key of
        `other` is telegram text, which is never compiled)."""
        if not literal:
            self._flush()
            self.parts.append("f'{" + self.constant(text) + "}'")
        else:
            self._text.append(text)

    def hole(self, expression: str) -> None:
        self.holes += 1
        if self.holes > _MOST_HOLES:
            raise Unsupported("too many values")
        self._flush()
        self.parts.append("f'{" + expression + "}'")

    def _flush(self) -> None:
        if self._text:
            self.parts.append(repr("".join(self._text)))
            self._text.clear()

    def value(self, var: str, value: object) -> None:
        """The text of `var`, whose exact type is checked to be `type(value)`."""
        kind = type(value)
        if value is None:
            self.text("null")
        elif kind is bool:
            self.hole(f"BOOLS[{var}]")
        elif kind is str:
            self.hole(f"ESCAPED[{var}]")
        elif kind is int:
            self.hole(f"INTS[{var}]")
        elif kind is float:
            # Zero is never kept (0.0 and -0.0 are one key, but two texts).
            self.hole(f"FLOATS[{var}] if {var} else ZERO if COPYSIGN(1.0, {var}) > 0 else NEG_ZERO")
        elif kind is datetime:
            # The place's kept (datetime, text): one tuple, replaced whole, so another
            # thread sees a datetime with its own text or the one before, never a mix.
            place, kept, text = self.datetimes, self.name(), self.name()
            self.datetimes += 1
            self.after_check += [
                f"{kept} = KEPT[{place}]",
                f"if {kept}[0] is {var}:",
                f"    {text} = {kept}[1]",
                "else:",
                f"    {text} = DATETIME({var})",
                f"    KEPT[{place}] = ({var}, {text})",
            ]
            self.text('"')
            self.hole(text)
            self.text('"')
        elif isinstance(value, Doc):
            fields = self.name()
            self.lines.append(f"{fields} = {var}.__dict__")
            self.mapping(fields, value.__dict__, keys_typed=False, own_keys=value.json_names)
        elif kind is dict:
            assert isinstance(value, dict)
            self.mapping(var, value, keys_typed=True)
        elif kind is list:
            assert isinstance(value, list)
            self.sequence(var, value)
        else:
            raise Unsupported(f"{kind.__name__} in a document")

    def mapping(
        self,
        var: str,
        fields: dict[Any, Any],
        *,
        keys_typed: bool,
        own_keys: tuple[str, ...] = (),
    ) -> None:
        """A dict's text: its keys in order, each value's type.

        `own_keys`: the document class's field names, written as literals of the source.
        """
        if not fields:
            self._empty(var, "{}")
            return
        if any(type(key) is not str for key in fields):
            raise Unsupported("a key that is not a string")
        self.keys.append(var)
        self.key_items += fields
        if keys_typed:  # a dict of the document's own (`other`): a key of any type may be equal
            key_types = self.constant((str,) * len(fields))
            self.lines.append(f"if tuple(map(type, {var})) != {key_types}: return None")
        names = [self.name() for _ in fields]
        self.lines.append(f"{', '.join(names)}, = {var}.values()")
        self.typed += names
        self.types += map(type, fields.values())
        separator = "{"
        for name, (key, value) in zip(names, fields.items(), strict=True):
            if key in own_keys:  # a field's name: the code's own text
                self.text(f"{separator}{self._escape(key)}:")
            else:
                self.text(separator)
                self.text(f"{self._escape(key)}:", literal=False)
            self.value(name, value)
            separator = ","
        self.text("}")

    def sequence(self, var: str, items: list[Any]) -> None:
        """A list's text: its length, each item's type."""
        if not items:
            self._empty(var, "[]")
            return
        names = [self.name() for _ in items]
        self.lines.append(f"{', '.join(names)}, = {var}")
        self.typed += names
        self.types += map(type, items)
        separator = "["
        for name, item in zip(names, items, strict=True):
            self.text(separator)
            self.value(name, item)
            separator = ","
        self.text("]")

    def _empty(self, var: str, text: str) -> None:
        # Chained with the keys: any item in it makes them differ (every other count is fixed).
        self.keys.append(var)
        self.text(text)

    def finish(self) -> str:
        self._flush()
        keys = self.constant(list(self.key_items))
        types = self.constant(tuple(self.types))
        # Unpacked values are checked after being taken apart: a list of the wrong length
        # or a value that is not a dict has raised by then, and every count is fixed.
        self.lines.append(
            f"if [{', '.join(f'*{var}' for var in self.keys)}] != {keys}"
            f" or ({''.join(f'type({name}), ' for name in self.typed)}) != {types}: return None"
        )
        self.lines += self.after_check
        # Adjacent literals, plain and f-strings, compile to one string built at once.
        self.lines.append(f"return ({' '.join(self.parts) or repr('')})")
        return "def write(document):\n" + "".join(f"    {line}\n" for line in self.lines)


def compile_writer(
    document: Doc,
    escaped: Mapping[str, str],
    floats: Mapping[float, str],
    ints: Mapping[int, str],
    datetime_text: Callable[[datetime], str],
) -> Writer:
    """The writer of `document`'s shape (Unsupported if it holds a value no writer takes).

    `escaped` maps a string to its JSON text, `floats` a float (never 0: 0.0 and -0.0 are
    one key but two texts) to its own, `ints` an int to its own, and `datetime_text` a
    datetime to its text without the quotes: the general encoder's rules, each with what
    it keeps (`datetime_text` is called only for a datetime new in its place). The writer
    returns None for a document of another shape, and may raise for one (the caller's
    general path then decides).
    """
    code = _Source(escaped.__getitem__)
    code.lines.append(f"if type(document) is not {code.constant(type(document))}: return None")
    code.lines.append("fields = document.__dict__")
    code.mapping("fields", document.__dict__, keys_typed=False, own_keys=type(document).json_names)
    source = code.finish()
    namespace = code.namespace
    namespace.update(
        ESCAPED=escaped,
        DATETIME=datetime_text,
        # No datetime is `None`: every place misses until its first datetime is written.
        KEPT=[(None, "")] * code.datetimes,
        BOOLS={True: "true", False: "false"},
        FLOATS=floats,
        INTS=ints,
        ZERO="0.0",
        NEG_ZERO="-0.0",
        COPYSIGN=copysign,
    )
    exec(source, namespace)  # no telegram text in it: see the module docstring
    writer: Writer = namespace["write"]
    return writer
