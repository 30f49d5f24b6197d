"""The layout of a meter's telegrams, cached per stream, so a repeat telegram skips the split.

Why: a meter sends the same lines in the same order every second, with fixed-width values;
only digits change. Once a telegram has been parsed by the general parser
(p1daemon/parse/telegram.py), its layout - where each value sits and how it is decoded -
holds for every later telegram whose bytes differ only in the digits of its values. Such a
telegram is recognised with two C-level comparisons (`Layout.matches`) and decoded by
slicing at the remembered offsets, with no regular expression, no per-line work and no
unit dispatch for the registers every telegram carries.

Why it gives the same reading as the general parser: when two bodies have the same length,
the same non-digit bytes and the same bytes outside the values' digits (header, OBIS
codes), the general parser splits them into the same OBIS keys, with each raw value at the
same offsets. Every field of the reading is then a function of raw value texts alone, and
the layout computes it either with the general parser's own helpers (everything but the
hot registers, in the general parser's order, so `other` keeps its key order) or, for the
hot registers, with a shortcut that is only taken when the register's text has a strict
form (digits, one '.', a fixed unit) that any digits keep - e.g. `003432.827*kWh` is
`float(number)` whatever its digits. A telegram in any other form makes its layout
ineligible: it and its look-alikes go through the general parser, as does anything that
fails the two comparisons. A new layout is checked against the general parser's reading of
the telegram it was made from (equal documents and equal JSON) before it is used.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from p1daemon.frame.events import Frame
from p1daemon.parse.telegram import (
    _OBJECT_LINE,
    _capacity,
    _dsmr_version,
    _exact_sum,
    _failure_log,
    _integer,
    _mbus,
    _number,
    _take,
    _text,
    _version,
    parse_telegram,
)
from p1daemon.parse.values import parse_timestamp, split_value, to_float, to_int
from p1daemon.reading.encode import general_json
from p1daemon.reading.model import (
    Current,
    EnergyDirection,
    Limiter,
    PhaseCounts,
    PowerFailureEvent,
    PowerFailures,
    Reading,
    Voltage,
)

_DIGITS = b"0123456789"
# Every digit to "0": bodies equal after this differ only in digits.
_ZERO_DIGITS = bytes.maketrans(_DIGITS, b"0" * 10)

# Strict forms of the hot registers' raw texts (with their parentheses). Each keeps its
# meaning for any digits in the same places, which is what makes the shortcut exact.
# (At most 20 characters: what `_is_plain` takes as a plain number.)
_ENERGY_FORM = re.compile(r"\((?=[0-9.]{1,20}\*)([0-9]+(?:\.[0-9]+)?)\*kWh\)")
_POWER_FORM = re.compile(r"\(([0-9]+(?:\.[0-9]+)?)\*kW\)")
_NUMBER_FORM = re.compile(r"\(([0-9]+(?:\.[0-9]+)?)(?:\*[A-Za-z]+)?\)")
_INTEGER_FORM = re.compile(r"\(([0-9]+)(?:\*[A-Za-z]+)?\)")
_DIGITS_FORM = re.compile(r"\(([0-9]+)\)")
# The longest number taken by `float()` / `int()` in place: any digits give a finite float.
_LONGEST = 300

# (field, OBIS) of the registers decoded by the shortcuts, per document.
_VOLTAGE = (("l1_v", "1-0:32.7.0"), ("l2_v", "1-0:52.7.0"), ("l3_v", "1-0:72.7.0"))
_CURRENT = (("l1_a", "1-0:31.7.0"), ("l2_a", "1-0:51.7.0"), ("l3_a", "1-0:71.7.0"))
_SAGS = (("l1", "1-0:32.32.0"), ("l2", "1-0:52.32.0"), ("l3", "1-0:72.32.0"))
_SWELLS = (("l1", "1-0:32.36.0"), ("l2", "1-0:52.36.0"), ("l3", "1-0:72.36.0"))
_PHASES = {"1": ("21", "41", "61"), "2": ("22", "42", "62")}
_ENERGY_FIELDS = ("t1_kwh", "t2_kwh", "t3_kwh", "t4_kwh")
_POWER_FIELDS = ("power_kw", "l1_kw", "l2_kw", "l3_kw")


class _Ineligible(Exception):
    """The telegram has a form the shortcuts do not cover: parse it the general way."""


class Layout:
    """Where the values of one telegram skeleton sit, and how each is decoded.

    `decode` is None for a skeleton the shortcuts do not cover: its telegrams are parsed
    the general way without the layout being rebuilt for each of them.
    """

    __slots__ = ("_fixed", "_mask", "_skeleton", "decode", "has_crc", "hits")

    def __init__(self, body: bytes, has_crc: bool, variable: list[tuple[int, int]]) -> None:
        # With or without a CRC decides the version of meters that declare none.
        self.has_crc = has_crc
        self._skeleton = body.translate(_ZERO_DIGITS)
        # 0xFF on every byte that must be equal to this body's (all but the values' digits).
        mask = bytearray(b"\xff" * len(body))
        for start, end in variable:
            for i in range(start, end):
                if body[i] in _DIGITS:
                    mask[i] = 0
        self._mask = int.from_bytes(mask)
        self._fixed = int.from_bytes(body) & self._mask
        self.decode: Callable[[str], Reading] | None = None
        self.hits = 0  # telegrams it matched

    def matches(self, body: bytes, skeleton: bytes) -> bool:
        """The same skeleton (`body` with its digits zeroed): only digits of values differ."""
        return skeleton == self._skeleton and int.from_bytes(body) & self._mask == self._fixed


def build_layout(body: bytes, has_crc: bool, reading: Reading) -> Layout:
    """The layout of `body`, whose general parse is `reading`.

    A telegram the shortcuts do not cover (irregular lines, forms they do not take, or a
    decoder that would not reproduce `reading` exactly) gets a layout with `decode` None:
    its exact repeats are then recognised as such, and parsed the general way.
    """
    try:
        text = body[:-1].decode("ascii")
    except UnicodeDecodeError:
        # A replaced byte would shift str offsets against byte offsets.
        return Layout(body, has_crc, [])
    after_header = text.find("\n") + 1
    lines = text.splitlines()
    spans = [
        (match.group(1), match.start(2), match.end(2))
        for match in _OBJECT_LINE.finditer(text, after_header)
    ]
    # Only the telegrams the general split takes in one regex (see split_objects), with no
    # OBIS code twice: any other telegram repairs lines, which no layout replays.
    regular = (
        after_header > 0
        and len(spans) == len(lines) - lines.count("") - (1 if lines[0] else 0)
        and len({obis for obis, _, _ in spans}) == len(spans)
    )
    if not regular:
        return Layout(body, has_crc, [])
    layout = Layout(body, has_crc, [(start + 1, end - 1) for _, start, end in spans])
    try:
        decode = _compile(text, lines[0][1:], spans, has_crc)
        made = decode(text)
    except Exception:  # a form the shortcuts do not take (_Ineligible), or any failure
        return layout
    if made == reading and general_json(made) == general_json(reading):
        layout.decode = decode
    return layout


def _compile(
    text: str, header: str, spans: list[tuple[str, int, int]], has_crc: bool
) -> Callable[[str], Reading]:
    """The decoder of this skeleton's telegrams, as straight-line code.

    Generated Python, because what makes the general parser cost is not one step but
    hundreds of small ones (lookups, pops, partitions, unit dispatch); with the offsets
    and the presence of each register fixed, what is left is slicing and `float()` (or
    a lookup of the slice's number where it seldom changes: `_Numbers`). The source
    holds only integer offsets and powers of ten, OBIS keys (digits and `-:.`, as the
    general parser's object pattern admits them) and field names; telegram text (the
    header) is passed in the namespace, so no byte of a telegram is ever compiled.
    """
    code = _Source(text, spans)
    version = code.take("1-3:0.2.8")
    # A declared version is decoded in place; without one (or in another form) the general
    # `_dsmr_version` decides, on the objects not taken, before anything else (as there).
    declared = version is not None and _DIGITS_FORM.fullmatch(version.raw) is not None
    if declared:
        assert version is not None
        version_fields = (f"_version({version.inner})", version.inner)
    else:
        code.give_back("1-3:0.2.8")
        version_fields = ("dsmr_version", "version_code")
    equipment = code.take("0-0:96.1.1")
    fields = {
        # Without 0-0:96.1.1, the general fallbacks (96.1.0, then 42.0.0) on `objects`.
        "equipment_id": "_equipment(objects)" if equipment is None else f"_text({equipment.inner})",
        # The header is telegram text: a constant of the decoder's namespace, never source.
        "header": "HEADER",
        "manufacturer": "MANUFACTURER",
        "dsmr_version": version_fields[0],
        "version_code": version_fields[1],
        "timestamp": code.call("0-0:1.0.0", "parse_timestamp"),
        "tariff": code.integer("0-0:96.14.0", _DIGITS_FORM, "to_int"),
        "import": _energy_source(code, "1"),
        "export": _energy_source(code, "2"),
        "voltage": code.doc("Voltage", [(f, code.number(o)) for f, o in _VOLTAGE]),
        "current": code.doc("Current", [(f, code.number(o)) for f, o in _CURRENT]),
        "voltage_sags": code.doc("PhaseCounts", [(f, code.integer(o)) for f, o in _SAGS]),
        "voltage_swells": code.doc("PhaseCounts", [(f, code.integer(o)) for f, o in _SWELLS]),
        "power_failures": code.doc(
            "PowerFailures",
            [
                ("short", code.integer("0-0:96.7.21")),
                ("long", code.integer("0-0:96.7.9")),
                ("log", code.call("1-0:99.97.0", "_log", whole=True, absent="[]")),
            ],
        ),
        "message": code.call("0-0:96.13.0", "_text"),
        "message_code": code.call("0-0:96.13.1", "_text"),
        "breaker_state": code.integer("0-0:96.3.10"),
        "limiter": code.call("0-0:17.0.0", "_limiter"),
        "fuse_threshold_a": code.number("1-0:31.4.0"),
        # M-Bus and capacity registers stay in `objects`: their helpers pop them there.
        "mbus": "_mbus(objects)" if code.has(_MBUS_OBIS) else "[]",
        "capacity": "_capacity(objects)" if code.has(_CAPACITY_OBIS) else "None",
        "other": "objects",
        "unparsed": "[]",
    }
    lines = ["def decode(b):", f"    objects = {code.rest()}"]
    if not declared:
        # Keys `_dsmr_version` looks for (never pops) that the decoder took out of `objects`.
        taken = tuple(key for key in ("0-0:96.14.0", "0-0:96.1.1") if key in code.hot)
        call = f"_version_of(objects, {has_crc!r}, {taken!r})"
        lines.append(f"    dsmr_version, version_code = {call}")
    lines += [f"    {statement}" for statement in code.statements]
    body = ", ".join(f"{key!r}: {value}" for key, value in fields.items())
    lines.append(f"    return Reading.of({{{body}}})")
    namespace = dict(_NAMESPACE)
    namespace.update(code.sums)
    namespace["HEADER"] = header
    namespace["MANUFACTURER"] = header[:3] if len(header) >= 3 else None
    source = "\n".join(lines)
    exec(source, namespace)  # offsets, OBIS keys (digits, '-', ':', '.') and names only
    decode: Callable[[str], Reading] = namespace["decode"]
    return decode


# M-Bus channels' and capacity's registers: `_mbus` / `_capacity` are only called (on the
# telegram's remaining objects) when the layout has one of them.
_MBUS_OBIS = re.compile(r"0-[1-4]:(?:24\.1\.0|96\.1\.[01]|24\.2\.[1-4]|24\.3\.0|24\.4\.0)")
_CAPACITY_OBIS = re.compile(r"1-0:1\.4\.0|1-0:1\.6\.0|0-0:98\.1\.0")


class _Value:
    """One register's place in the body: the source text of its slices."""

    __slots__ = ("end", "raw", "start")

    def __init__(self, raw: str, start: int) -> None:
        self.raw = raw
        self.start = start
        self.end = start + len(raw)

    @property
    def whole(self) -> str:
        return f"b[{self.start}:{self.end}]"

    @property
    def inner(self) -> str:
        return f"b[{self.start + 1}:{self.end - 1}]"

    def number(self, form: re.Pattern[str]) -> str | None:
        """The slice of the number in `form`, or None if the text is in another form.

        Or longer than `_LONGEST`: digits alone then decide whether `float()` is finite
        (a 309-digit number may be 1e308 or infinity, which the general parser makes None)
        and whether `int()` takes it at all (not beyond 4,300 digits).
        """
        span = self.span(form)
        return None if span is None else _slice(span)

    def span(self, form: re.Pattern[str]) -> tuple[int, int] | None:
        """(start, end) in the body of the number in `form`, as `number`."""
        match = form.fullmatch(self.raw)
        if match is None or match.end(1) - match.start(1) > _LONGEST:
            return None
        return self.start + match.start(1), self.start + match.end(1)


class _Source:
    """The telegram's registers, as the generated decoder takes them (`hot`) or leaves them."""

    def __init__(self, text: str, spans: list[tuple[str, int, int]]) -> None:
        self._text = text
        self._spans = spans
        self._values = {obis: _Value(text[start:end], start) for obis, start, end in spans}
        self.hot: set[str] = set()
        self.statements: list[str] = []  # of the decoder, before it makes the reading
        self.sums: dict[str, _Numbers] = {}  # name -> the kept quotients of a tariff sum

    def take(self, obis: str) -> _Value | None:
        value = self._values.get(obis)
        if value is not None:
            self.hot.add(obis)
        return value

    def text_at(self, start: int, end: int) -> str:
        return self._text[start:end]

    def give_back(self, obis: str) -> None:
        self.hot.discard(obis)

    def has(self, pattern: re.Pattern[str]) -> bool:
        return any(pattern.fullmatch(obis) for obis in self._values)

    def rest(self) -> str:
        """The dict display of the registers not taken, in telegram order (`other`'s order)."""
        items = ", ".join(
            f"{obis!r}: b[{start}:{end}]"
            for obis, start, end in self._spans
            if obis not in self.hot
        )
        return "{" + items + "}"

    def call(self, obis: str, function: str, *, whole: bool = False, absent: str = "None") -> str:
        """`function(text)` of the register's text (inside its parentheses unless `whole`)."""
        value = self.take(obis)
        if value is None:
            return absent
        return f"{function}({value.whole if whole else value.inner})"

    def number(self, obis: str) -> str:
        """As `_number`: `float()` of a plain number, else the general helper."""
        value = self.take(obis)
        if value is None:
            return "None"
        plain = value.number(_NUMBER_FORM)
        return f"FLOATS[{plain}]" if plain else f"_number({value.inner})"

    def integer(
        self, obis: str, form: re.Pattern[str] = _INTEGER_FORM, general: str = "_integer"
    ) -> str:
        """As `_integer` (or `general`): `int()` of plain digits, else the general helper."""
        value = self.take(obis)
        if value is None:
            return "None"
        plain = value.number(form)
        return f"INTS[{plain}]" if plain else f"{general}({value.inner})"

    def energy(self, obis: str, form: re.Pattern[str]) -> tuple[int, int] | None:
        """Where a plain kWh / kW number is; a register in another form: ineligible."""
        value = self.take(obis)
        if value is None:
            return None
        span = value.span(form)
        if span is None:
            raise _Ineligible
        return span

    def doc(self, cls: str, fields: list[tuple[str, str]]) -> str:
        """A statement that makes the document (as `Doc.of`, one call less); its name.

        Only for documents of the values taken out: making them touches no `objects`.
        """
        name = f"d{len(self.statements)}"
        items = ", ".join(f"{key!r}: {value}" for key, value in fields)
        self.statements.append(f"{name} = _new({cls}); {name}.__dict__ = {{{items}}}")
        return name


class _Numbers(dict[Any, Any]):
    """A number's text -> `convert(text)`, kept: the same conversion, done once per text.

    Why: most registers of a telegram have the text they had in the one before (energy
    registers move a few Wh a minute, counters seldom, voltages among a few dozen
    values), and a lookup of the slice costs under half of `float()` of it. What is
    kept is a pure function of the text alone (floats and ints are immutable), so any
    meter's decoders can share one. Bounded: cleared when full. Power registers, which
    change nearly every telegram, are not looked up here (a miss costs more than the
    conversion saves).
    """

    __slots__ = ("_convert",)

    def __init__(self, convert: Callable[[str], Any]) -> None:
        super().__init__()
        self._convert = convert

    def __missing__(self, key: Any) -> Any:
        value = self._convert(key)
        if len(self) >= _NUMBERS_KEPT:
            self.clear()
        self[key] = value
        return value


_NUMBERS_KEPT = 256  # per kept conversion: some 30 KB at most


def _scaled(text: str) -> int:
    """The digits of a plain number as one integer: `003432.827` -> 3432827."""
    return int(text.replace(".", ""))


# float() / int() of a plain number's text; the digits of one (for the exact sums).
_FLOATS = _Numbers(float)
_INTS = _Numbers(int)
_SCALED = _Numbers(_scaled)


def _energy_source(code: _Source, direction: str) -> str:
    """One direction's document, as `_energy` decodes plain kWh and kW registers.

    Each tariff and the total are `float(number)`; without a total register the present
    tariffs' texts are summed exactly: as integers of their digits when they have the same
    count of decimals (as `_fixed_sum`: see `_sum_source`), else by `_exact_sum`.
    Power registers (new values nearly every telegram) are `float()` as they come; the
    other numbers through the kept conversions (`_Numbers`).
    """
    tariffs = [code.energy(f"1-0:{direction}.8.{t}", _ENERGY_FORM) for t in "1234"]
    total = code.energy(f"1-0:{direction}.8.0", _ENERGY_FORM)
    power_keys = (f"1-0:{direction}.7.0", *(f"1-0:{c}.7.0" for c in _PHASES[direction]))
    powers = [code.energy(obis, _POWER_FORM) for obis in power_keys]
    fields = [
        (name, "None" if at is None else f"FLOATS[{_slice(at)}]")
        for name, at in zip(_ENERGY_FIELDS, tariffs, strict=True)
    ]
    present = [at for at in tariffs if at is not None]
    if total is not None:
        total_source = f"FLOATS[{_slice(total)}]"
    elif present:
        total_source = _sum_source(present, code, f"SUM{direction}")
    else:
        total_source = "None"
    fields.append(("total_kwh", total_source))
    fields += [
        (name, "None" if at is None else f"float({_slice(at)})")
        for name, at in zip(_POWER_FIELDS, powers, strict=True)
    ]
    return code.doc("EnergyDirection", fields)


def _slice(span: tuple[int, int]) -> str:
    return f"b[{span[0]}:{span[1]}]"


def _sum_source(spans: list[tuple[int, int]], code: _Source, name: str) -> str:
    """The exact sum of the plain numbers at `spans`, as `_exact_sum` makes it.

    With the same count of decimals d in each, the sum is that of their digits as
    integers, divided by 10**d: an int by an int is correctly rounded, as `float()` of
    the sum's decimal text is (what `_exact_sum` and the former source computed), so it
    is the same float, with no text to make and parse again. The quotient is kept per
    sum of digits (`name`, a `_Numbers` of this decoder's): an unchanged total is then
    the very float object of the telegram before, as the registers kept by their texts
    are, which the energy views take as "nothing moved" (p1daemon/views/energy/samples.py).
    """
    texts = [code.text_at(start, end) for start, end in spans]
    decimals = {len(t) - t.find(".") - 1 if "." in t else 0 for t in texts}
    if len(decimals) != 1:
        return f"_exact_sum([{', '.join(_slice(span) for span in spans)}])"
    code.sums[name] = _Numbers((10 ** decimals.pop()).__rtruediv__)
    return f"{name}[{' + '.join(f'SCALED[{_slice(span)}]' for span in spans)}]"


def _version_of(
    objects: dict[str, str], has_crc: bool, hot: tuple[str, ...]
) -> tuple[str | None, str | None]:
    """`_dsmr_version` of the whole telegram: it looks for keys the shortcuts took away."""
    for key in hot:
        objects[key] = ""  # only looked for; deleted before anything else sees `objects`
    try:
        return _dsmr_version(objects, has_crc)
    finally:
        for key in hot:
            del objects[key]


def _equipment(objects: dict[str, str]) -> str | None:
    """As the general parser, for a telegram without 0-0:96.1.1."""
    equipment = _take(objects, "0-0:96.1.0")
    if equipment is None:
        equipment = _take(objects, "0-0:42.0.0")
    return None if equipment is None else _text(equipment)


def _limiter(text: str) -> Limiter:
    number, unit = split_value(text)
    return Limiter.of({"value": to_float(number), "unit": unit})


def _log(raw: str) -> list[PowerFailureEvent]:
    return [
        PowerFailureEvent.of({"end": end, "duration_s": duration})
        for end, duration in _failure_log(raw)
    ]


_NAMESPACE: dict[str, Any] = {
    "_new": object.__new__,  # what `Doc.of` calls: no Doc class has a __new__ of its own
    "Reading": Reading,
    "EnergyDirection": EnergyDirection,
    "Voltage": Voltage,
    "Current": Current,
    "PhaseCounts": PhaseCounts,
    "PowerFailures": PowerFailures,
    "_version": _version,
    "_version_of": _version_of,
    "_equipment": _equipment,
    "_text": _text,
    "_number": _number,
    "_integer": _integer,
    "to_int": to_int,
    "parse_timestamp": parse_timestamp,
    "_limiter": _limiter,
    "_log": _log,
    "_exact_sum": _exact_sum,
    "_mbus": _mbus,
    "_capacity": _capacity,
    "FLOATS": _FLOATS,
    "INTS": _INTS,
    "SCALED": _SCALED,
}


# Layouts kept per stream: a meter may alternate between a few (a text message that comes
# and goes), and a kept one is checked in ~0.5 us where making it again costs ~0.5 ms.
_KEPT = 4
# A layout is made when two telegrams in a row have the same skeleton and no layout
# matches. If the last one made was never used (the same skeleton, but other digits in the
# header or OBIS codes each time), the next attempt waits 1, 2, 4 ... at most this many
# telegrams: such a meter must not pay for a new layout on every telegram.
_MAX_PAUSE = 256


class LayoutParser:
    """`parse_telegram` for one stream, with the layouts of its recent telegrams cached.

    Frames reach it only after framing and the CRC check (p1daemon/parse/stream.py): the
    layouts are made from, and applied to, accepted telegrams alone.
    """

    __slots__ = ("_layouts", "_pause", "_seen", "_wait", "hits")

    def __init__(self) -> None:
        self._layouts: list[Layout] = []  # most recently used first
        self._seen = b""  # the skeleton of the last telegram no layout matched
        self._pause = 1
        self._wait = 0
        self.hits = 0  # telegrams decoded by a layout (tests hold it to being used)

    def parse(self, frame: Frame) -> Reading:
        body = frame.body
        has_crc = frame.crc is not None
        skeleton = body.translate(_ZERO_DIGITS)
        for layout in self._layouts:
            if layout.has_crc is has_crc and layout.matches(body, skeleton):
                return self._decode(layout, frame)
        return self._miss(frame, has_crc, skeleton)

    def _decode(self, layout: Layout, frame: Frame) -> Reading:
        layout.hits += 1
        self._pause = 1
        if layout is not self._layouts[0]:
            self._layouts.remove(layout)
            self._layouts.insert(0, layout)
        if layout.decode is not None:
            try:
                reading = layout.decode(frame.body[:-1].decode("ascii"))
            except Exception:  # never worse than the general parser: it decides
                return parse_telegram(frame)
            self.hits += 1
            return reading
        return parse_telegram(frame)

    def _miss(self, frame: Frame, has_crc: bool, skeleton: bytes) -> Reading:
        reading = parse_telegram(frame)
        if skeleton != self._seen:
            # A form seen once is not yet worth a layout: a stream of one telegram (`p1daemon
            # parse`, `report verify`) or of ever-changing forms never pays for one.
            self._seen = skeleton
            return reading
        if self._wait:
            self._wait -= 1
            if self._wait:
                return reading
        elif self._layouts and not self._layouts[0].hits:
            # The last layout made was never used: wait before making another.
            self._wait = self._pause
            self._pause = min(2 * self._pause, _MAX_PAUSE)
            return reading
        self._layouts.insert(0, build_layout(frame.body, has_crc, reading))
        del self._layouts[_KEPT:]
        return reading
