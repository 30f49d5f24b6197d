"""Quarter-hour and day energy of one metering point, from its cumulative registers.

Feed every accepted reading of one meter, in order (`feed`); closed quarters and day
documents come back as they happen. Nothing here integrates power: every value is a
difference of two register readings.

Booking rule. Each interval between two consecutive readings is booked whole to one
period. An interval inside one quarter belongs to it, however long it is (the register
difference is exact). An interval that crosses one boundary is booked to the earlier
quarter when the later reading is within `quarter_tolerance_s` after the boundary (that
reading stands in for the register state at the boundary; with readings on the boundary
itself, as DSMR 5 meters send every second, this is exact), else to the later quarter
when the earlier reading is that close before it. Anything else (a longer interval, one
spanning several quarters) is a gap: not spread over the quarters it covers, but
reported where data resumes, and still counted in the day when both of its ends lie in
the same day (the day's total stays exact).

A meter replacement (the reader's flag, a changed equipment id, a register going
backwards, or a register advancing faster than `max_plausible_kw`) starts a new
baseline: the interval across it is unknown, never a negative or absurd delta, and the
periods it touches are flagged.

Readings whose time does not advance are ignored (counted in `ignored`): duplicates, or
a meter clock stepping back, which would otherwise book energy twice. The exception is a
new timeline: the clock goes back by more than `quarter_tolerance_s` *and* the registers
go down (or the meter was replaced), and the next reading carries on from there (one
stray old telegram is not a new timeline). Waiting for the clock to catch up would then
stall the views for as long as it went back (for ever, for a replay that loops), so the
view starts a new baseline at the first reading of the new timeline instead: the running
quarter is closed with `end_missing`, the periods that follow are flagged
`meter_replaced`, and the day keeps what was booked in it when the new timeline is still
in the same day (counted in `restarts`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from p1daemon.reading.meter import MeterReading, Role
from p1daemon.views.energy.clock import day_bounds, local, local_date, quarter_end, quarter_start
from p1daemon.views.energy.documents import (
    DayDoc,
    Energy,
    Gap,
    QuarterDoc,
    RegisterState,
    quarter_status,
)
from p1daemon.views.energy.samples import (
    Key,
    Sample,
    energy_of,
    sample_from_state,
    sample_of,
    state_of,
    totals_of,
)
from p1daemon.views.energy.settings import SiteSettings

# One register step of the coarsest meters (some DSMR 2.2 meters count whole kWh): a jump
# this small is never a replaced meter, even across a one-second interval.
_JUMP_SLACK_KWH = Decimal(1)
_ZERO = Decimal(0)
_SECONDS_PER_HOUR = Decimal(3600)

# The last `EnergyView._deltas` result: (prev, sample, max_kw, (deltas, reset)), replaced
# whole (a concurrent caller at worst works its own out). Samples are immutable and the
# deltas are never changed once made (they are only added to sums), so one result can
# serve every view fed the same two samples.
_last_deltas: tuple[Sample, Sample, Decimal, tuple[dict[Key, Decimal], bool]] | None = None


class _Zeros(dict[Key, Decimal]):
    """The deltas between two samples sharing one registers mapping (nothing moved):
    `v - v` for every register, a zero with the register's own exponent.

    Adding one to a sum changes at most the sum's exponent (0.5 + 0.000 = 0.500), to
    at most the zero's: adding the same zeros right after changes nothing at all (the
    sum is never -0: deltas are never negative, and x - x is +0). Most telegrams of a
    meter carry the registers of the one before (a few Wh a minute at 1 s), so these
    are made once per run of equal registers and booked once per period."""


# The zeros of the last registers mapping they were made for, replaced whole.
_last_zeros: tuple[Mapping[Key, Decimal], _Zeros] | None = None


def _zeros_of(registers: Mapping[Key, Decimal]) -> _Zeros:
    global _last_zeros
    last = _last_zeros
    if last is not None and last[0] is registers:
        return last[1]
    zeros = _Zeros({key: value - value for key, value in registers.items()})
    _last_zeros = (registers, zeros)
    return zeros


@dataclass(slots=True)
class _Period:
    start: datetime
    end: datetime
    start_missing: bool
    sums: dict[Key, Decimal] = field(default_factory=dict)
    end_missing: bool = False
    meter_replaced: bool = False
    registers_changed: bool = False
    touched: bool = False  # an interval was booked to it (or lost to a replacement)
    readings: int = 0
    equipment_id: str | None = None
    gap_before: Gap | None = None
    gaps: list[Gap] = field(default_factory=list)
    quarters: int = 0
    last: Sample | None = None  # the reading its sums run up to
    first: Sample | None = None  # the reading its sums run from (quarters only)
    # False for a day nobody reads the sums of (the history's view makes no day
    # documents): booking then keeps the flags and the last reading only.
    keeps_sums: bool = True
    # The `_Zeros` booked last, if the last booking was one: booking them again leaves
    # every sum as it is (see `_Zeros`), so it is not done.
    zeros: _Zeros | None = None

    def book(
        self,
        deltas: Mapping[Key, Decimal],
        *,
        reset: bool,
        changed: bool,
        sample: Sample,
    ) -> None:
        self.touched = True
        if reset:
            self.meter_replaced = True
        if self.keeps_sums and deltas is not self.zeros:
            totals = self.sums
            get = totals.get
            for key, delta in deltas.items():
                totals[key] = get(key, _ZERO) + delta
            self.zeros = deltas if type(deltas) is _Zeros else None
        if changed:
            self.registers_changed = True
        self.equipment_id = sample.equipment_id
        self.last = sample

    @property
    def complete(self) -> bool:
        return self.touched and not (
            self.start_missing or self.end_missing or self.meter_replaced or self.registers_changed
        )


@dataclass(frozen=True, slots=True)
class ClosedQuarter:
    """A closed quarter as the history needs it: the published document plus the exact
    register readings its values run between (meter timestamps) and the exact sums.

    The quarter document and the history row are both made from this one result, so the
    numbers on MQTT and in a report cannot differ."""

    doc: QuarterDoc
    first: Sample | None
    last: Sample | None
    sums: Mapping[Key, Decimal]


@dataclass(slots=True)
class ViewOutput:
    quarters: list[QuarterDoc] = field(default_factory=list)
    closed: list[ClosedQuarter] = field(default_factory=list)  # one per entry in `quarters`
    days: list[DayDoc] = field(default_factory=list)  # finals and running snapshots, in order
    # Set when this reading started a new baseline (replaced meter, register backwards or
    # implausible, new timeline): the last reading before it and the first one after.
    replacement: tuple[Sample, Sample] | None = None
    # Set when this reading confirmed a new timeline (see the module docstring): the time
    # of the last reading before it and of the new baseline, for whoever logs it.
    restarted: tuple[datetime, datetime] | None = None


class EnergyView:
    def __init__(
        self,
        meter: str,
        role: Role,
        ean: str | None,
        settings: SiteSettings,
        *,
        day_documents: bool = True,
    ) -> None:
        # day_documents=False: quarters only (the history sums days itself), which spares
        # a document per closed quarter and the day's sums (booked on every reading).
        self._day_documents = day_documents
        self.meter = meter
        self.role = role
        self.ean = ean
        self._zone = settings.zone
        self._tolerance_s = settings.quarter_tolerance_s
        self._max_kw = Decimal(repr(settings.max_plausible_kw))
        self._prev: Sample | None = None
        self._quarter: _Period | None = None
        self._day: _Period | None = None
        self.ignored = 0
        self.restarts = 0
        self._candidate: Sample | None = None  # went back: a stray reading or a new timeline

    # -- feeding -----------------------------------------------------------------------------

    def feed(self, reading: MeterReading) -> ViewOutput:
        out = ViewOutput()
        sample = sample_of(reading)
        if sample is None:
            return out
        prev = self._prev
        if prev is None:
            self._begin(sample)
            return out
        if sample.at <= prev.at:
            candidate = self._candidate
            if candidate is None or not self._continues(candidate, sample):
                # Ignored, but remembered if it may be the first of a new timeline.
                self._candidate = sample if self._new_timeline(prev, sample) else None
                self.ignored += 1
                return out
            # A second reading carries on from the first one that went back: it was not
            # a stray old telegram but a new timeline, with a baseline at that first one.
            self._candidate = None
            self.ignored -= 1
            self._restart(prev, candidate, out)
            out.replacement = (prev, candidate)
            prev = candidate
        self._candidate = None
        deltas, reset = self._deltas(prev, sample)
        if reset:
            out.replacement = (prev, sample)
        before, after = prev.registers, sample.registers
        changed = before is not after and before.keys() != after.keys()
        self._step(prev, sample, deltas, reset, changed, out)
        self._prev = sample
        assert self._quarter is not None
        self._quarter.readings += 1
        return out

    def _begin(self, sample: Sample) -> None:
        start = quarter_start(sample.at, self._zone)
        self._quarter = _Period(start, quarter_end(start), sample.at != start)
        self._quarter.readings = 1
        # Whose readings it holds, even if it closes before anything is booked to it.
        self._quarter.equipment_id = sample.equipment_id
        self._quarter.last = self._quarter.first = sample
        day_start, day_end = day_bounds(local_date(sample.at, self._zone), self._zone)
        self._day = _Period(
            day_start,
            day_end,
            sample.at != day_start,
            last=sample,
            equipment_id=sample.equipment_id,
            keeps_sums=self._day_documents,
        )
        self._prev = sample

    def _new_timeline(self, prev: Sample, sample: Sample) -> bool:
        """Back in time beyond the tolerance, with the registers showing another meter
        (or the same capture played again): see the module docstring."""
        if (prev.at - sample.at).total_seconds() <= self._tolerance_s:
            return False
        if sample.replaced or (
            prev.equipment_id is not None
            and sample.equipment_id is not None
            and prev.equipment_id != sample.equipment_id
        ):
            return True
        common = prev.registers.keys() & sample.registers.keys()
        return any(sample.registers[key] < prev.registers[key] for key in common)

    @staticmethod
    def _continues(candidate: Sample, sample: Sample) -> bool:
        """`sample` follows `candidate` on the same meter: later, no register down."""
        if sample.at <= candidate.at or sample.replaced:
            return False
        if candidate.equipment_id != sample.equipment_id:
            return False
        common = candidate.registers.keys() & sample.registers.keys()
        return all(sample.registers[key] >= candidate.registers[key] for key in common)

    def _restart(self, prev: Sample, sample: Sample, out: ViewOutput) -> None:
        """A new baseline at `sample`, earlier than everything booked so far."""
        self.restarts += 1
        out.restarted = (local(prev.at, self._zone), local(sample.at, self._zone))
        quarter, day = self._quarter, self._day
        assert quarter is not None and day is not None
        if quarter.touched:
            quarter.end_missing = True
            self._close_quarter(out)
        start = quarter_start(sample.at, self._zone)
        if day.start <= sample.at < day.end:
            # Still the same local day: what was booked in it stays (it flowed), flagged.
            day.meter_replaced = True
            day.last = sample
            self._quarter = _Period(start, quarter_end(start), True, meter_replaced=True)
            self._quarter.last = self._quarter.first = sample
            self._quarter.readings = 1
            self._prev = sample
            if self._day_documents:
                out.days.append(self._day_doc(day, final=False))
        else:
            self._begin(sample)
            assert self._quarter is not None and self._day is not None
            self._quarter.meter_replaced = True
            self._day.meter_replaced = True

    def _deltas(self, prev: Sample, sample: Sample) -> tuple[dict[Key, Decimal], bool]:
        """The register differences from `prev` to `sample`, or ({}, True) for a new
        baseline. The energy views and the history each have a view of the same meter
        fed the same samples: the second asks for what the first just worked out."""
        global _last_deltas
        last = _last_deltas
        if last is not None and last[0] is prev and last[1] is sample and last[2] == self._max_kw:
            return last[3]
        result = self._work_out_deltas(prev, sample)
        _last_deltas = (prev, sample, self._max_kw, result)
        return result

    def _work_out_deltas(self, prev: Sample, sample: Sample) -> tuple[dict[Key, Decimal], bool]:
        if sample.replaced or (
            prev.equipment_id is not None
            and sample.equipment_id is not None
            and prev.equipment_id != sample.equipment_id
        ):
            return {}, True
        before, after = prev.registers, sample.registers
        if before is after:  # the same values (samples.py shares the mapping): nothing moved
            return _zeros_of(after), False
        # The usual case, the same registers in both: no set of the common keys to build.
        keys = after.keys() if before.keys() == after.keys() else before.keys() & after.keys()
        deltas: dict[Key, Decimal] = {}
        ceiling: Decimal | None = None
        for key in keys:
            delta = after[key] - before[key]
            if delta < _ZERO:
                return {}, True
            # The ceiling is at least the slack (the interval is never negative here), so
            # it is only worked out (a Decimal division) for a jump larger than that.
            if delta > _JUMP_SLACK_KWH:
                if ceiling is None:
                    hours = Decimal(repr((sample.at - prev.at).total_seconds())) / _SECONDS_PER_HOUR
                    ceiling = self._max_kw * hours + _JUMP_SLACK_KWH
                if delta > ceiling:
                    return {}, True
            deltas[key] = delta
        return deltas, False

    def _step(
        self,
        prev: Sample,
        sample: Sample,
        deltas: dict[Key, Decimal],
        reset: bool,
        changed: bool,
        out: ViewOutput,
    ) -> None:
        quarter, day = self._quarter, self._day
        assert quarter is not None and day is not None
        if quarter.start <= sample.at < quarter.end:
            # The usual case, one reading a second: no time-zone arithmetic needed.
            quarter.book(deltas, reset=reset, changed=changed, sample=sample)
            day.book(deltas, reset=reset, changed=changed, sample=sample)
            return
        start = quarter_start(sample.at, self._zone)
        next_one = start == quarter.end
        after = (sample.at - quarter.end).total_seconds()
        before = (quarter.end - prev.at).total_seconds()
        if next_one and not reset and after <= self._tolerance_s:
            # The later reading stands in for the boundary: book to the closing quarter.
            quarter.book(deltas, reset=False, changed=changed, sample=sample)
            day.book(deltas, reset=False, changed=changed, sample=sample)
            self._close_quarter(out)
            self._open(start, sample, start_missing=False, out=out)
        elif next_one and not reset and before <= self._tolerance_s:
            # The earlier reading stands in for the boundary: book to the opening quarter.
            self._close_quarter(out)
            self._open(start, prev, start_missing=False, out=out)
            assert self._quarter is not None
            self._quarter.book(deltas, reset=False, changed=changed, sample=sample)
            self._running_day().book(deltas, reset=False, changed=changed, sample=sample)
        else:
            self._gap(prev, sample, start, deltas, reset, changed, out)
        if self._day_documents:
            out.days.append(self._day_doc(self._running_day(), final=False))

    def _gap(
        self,
        prev: Sample,
        sample: Sample,
        start: datetime,
        deltas: dict[Key, Decimal],
        reset: bool,
        changed: bool,
        out: ViewOutput,
    ) -> None:
        quarter, day = self._quarter, self._day
        assert quarter is not None and day is not None
        gap = Gap(
            start=local(prev.at, self._zone),
            end=local(sample.at, self._zone),
            import_=Energy() if reset else energy_of(deltas, "import"),
            export=Energy() if reset else energy_of(deltas, "export"),
            meter_replaced=reset,
        )
        quarter.end_missing = True
        self._close_quarter(out)
        if local_date(sample.at, self._zone) == local_date(day.start, self._zone):
            # Both ends inside this day: the day's total stays exact.
            day.book(deltas, reset=reset, changed=changed, sample=sample)
            day.gaps.append(gap)
        self._open(start, sample, start_missing=True, out=out, gap=gap)

    def _open(
        self,
        start: datetime,
        opening: Sample,
        *,
        start_missing: bool,
        out: ViewOutput,
        gap: Gap | None = None,
    ) -> None:
        day = self._running_day()
        if start >= day.end:
            day.end_missing = start_missing
            self._emit_final_day(day, out)
            day_start, day_end = day_bounds(local_date(start, self._zone), self._zone)
            # The new day's own start is missing when data resumed after a gap that began
            # in an earlier day, or when the first quarter's start is missing.
            new_day = _Period(
                day_start,
                day_end,
                start_missing or start != day_start,
                keeps_sums=self._day_documents,
            )
            new_day.last = opening
            if gap is not None:
                new_day.gaps.append(gap)
                new_day.meter_replaced = gap.meter_replaced
            self._day = new_day
        quarter = _Period(start, quarter_end(start), start_missing, gap_before=gap)
        if gap is not None and gap.meter_replaced:
            quarter.meter_replaced = True
        quarter.last = quarter.first = opening
        self._quarter = quarter

    def _close_quarter(self, out: ViewOutput) -> None:
        quarter = self._quarter
        assert quarter is not None
        day = self._running_day()
        if quarter.touched or quarter.gap_before is not None:
            day.quarters += 1
            doc = self._quarter_doc(quarter)
            out.quarters.append(doc)
            out.closed.append(ClosedQuarter(doc, quarter.first, quarter.last, dict(quarter.sums)))
        self._quarter = None

    def _emit_final_day(self, day: _Period, out: ViewOutput) -> None:
        if self._day_documents and (day.touched or day.gaps):
            out.days.append(self._day_doc(day, final=True))

    def _running_day(self) -> _Period:
        assert self._day is not None
        return self._day

    # -- documents -------------------------------------------------------------------------

    def current_day(self) -> DayDoc | None:
        """The running day so far (not final), e.g. for a dashboard that just connected;
        None without day documents (its sums are not kept)."""
        if self._day is None or not self._day_documents:
            return None
        return self._day_doc(self._day, final=False)

    def _quarter_doc(self, period: _Period) -> QuarterDoc:
        return QuarterDoc(
            meter=self.meter,
            role=self.role,
            ean=self.ean,
            equipment_id=period.equipment_id,
            start=local(period.start, self._zone),
            end=local(period.end, self._zone),
            import_=energy_of(period.sums, "import"),
            export=energy_of(period.sums, "export"),
            complete=period.complete,
            start_missing=period.start_missing,
            end_missing=period.end_missing,
            meter_replaced=period.meter_replaced,
            registers_changed=period.registers_changed,
            gap_before=period.gap_before,
            readings=period.readings,
            status=quarter_status(period.complete, period.meter_replaced),
        )

    def _day_doc(self, period: _Period, *, final: bool) -> DayDoc:
        return DayDoc(
            meter=self.meter,
            role=self.role,
            ean=self.ean,
            equipment_id=period.equipment_id,
            date=local_date(period.start, self._zone),
            start=local(period.start, self._zone),
            end=local(period.end, self._zone),
            hours=(period.end - period.start).total_seconds() / 3600,
            import_=energy_of(period.sums, "import"),
            export=energy_of(period.sums, "export"),
            final=final,
            complete=final and period.complete,
            start_missing=period.start_missing,
            end_missing=period.end_missing,
            meter_replaced=period.meter_replaced,
            registers_changed=period.registers_changed,
            gaps=list(period.gaps),
            quarters=period.quarters,
            last_reading=None if period.last is None else state_of(period.last, self._zone),
        )

    def last_sample(self) -> Sample | None:
        """The reading everything so far runs up to (what `resume` continues from)."""
        return self._prev

    def quarter_first(self) -> Sample | None:
        """The reading the running quarter's sums run from, whatever its flags: the
        history keeps its telegram as evidence."""
        quarter = self._quarter
        return None if quarter is None else quarter.first

    def opening_sample(self) -> Sample | None:
        """`quarter_opening` as a sample."""
        quarter = self._quarter
        if quarter is None or quarter.first is None:
            return None
        if quarter.start_missing or quarter.meter_replaced or quarter.registers_changed:
            return None
        return quarter.first

    def quarter_opening(self) -> RegisterState | None:
        """The running quarter's opening reading, while nothing is missing in it so far:
        saved at a stop beside `current_day()`, it lets a restart within the quarter
        continue it whole (`restore(doc, opening=...)`)."""
        first = self.opening_sample()
        return None if first is None else state_of(first, self._zone)

    # -- restart ---------------------------------------------------------------------------

    def restore(self, doc: DayDoc, *, opening: RegisterState | None = None) -> bool:
        """Continue a day after a restart from its last running document.

        Call before the first `feed`, with the newest non-final day document this meter
        published (the retained `<prefix>/<meter>/day`, or a local copy). Its
        `last_reading` becomes the previous reading, so the interval from it to the
        first live reading is booked by the usual rules: exact if it stays in one quarter,
        a gap otherwise, and the day's total stays exact as long as the daemon is back
        the same day. The quarter that was running is continued but flagged
        `start_missing` (what it held before the restart is not in the document).
        With `opening` (the `quarter_opening()` saved with the document) the running
        quarter continues whole instead, not flagged.
        Returns False, changing nothing, when the document does not fit.
        """
        state = doc.last_reading
        if self._prev is not None or doc.final or state is None or doc.meter != self.meter:
            return False
        day_start, day_end = day_bounds(doc.date, self._zone)
        prev = sample_from_state(state)
        bounds = (doc.start.timestamp(), doc.end.timestamp())
        if bounds != (day_start.timestamp(), day_end.timestamp()):
            return False
        if not day_start <= prev.at < day_end:
            return False
        day = _Period(day_start, day_end, doc.start_missing, keeps_sums=self._day_documents)
        day.sums = totals_of(doc.import_, doc.export)
        day.end_missing = doc.end_missing
        day.meter_replaced = doc.meter_replaced
        day.registers_changed = doc.registers_changed
        day.touched = True
        day.gaps = list(doc.gaps)
        day.quarters = doc.quarters
        day.equipment_id = doc.equipment_id
        day.last = prev
        start = quarter_start(prev.at, self._zone)
        quarter = _Period(start, quarter_end(start), True)
        quarter.last = quarter.first = prev
        quarter.equipment_id = prev.equipment_id
        quarter.readings = 1
        self._continue_quarter(quarter, prev, opening)
        self._day, self._quarter, self._prev = day, quarter, prev
        return True

    def _continue_quarter(
        self, quarter: _Period, prev: Sample, opening: RegisterState | Sample | None
    ) -> None:
        saved = self._opening_of(opening, prev, quarter.start)
        if saved is not None:
            # The quarter's own opening reading was saved: it continues whole.
            quarter.start_missing = False
            quarter.first = saved
            quarter.touched = prev.at > saved.at
            for key in saved.registers.keys() & prev.registers.keys():
                quarter.sums[key] = prev.registers[key] - saved.registers[key]

    def _opening_of(
        self, state: RegisterState | Sample | None, prev: Sample, start: datetime
    ) -> Sample | None:
        if state is None:
            return None
        opening = state if isinstance(state, Sample) else sample_from_state(state)
        if opening.equipment_id != prev.equipment_id or opening.registers.keys() != (
            prev.registers.keys()
        ):
            return None
        if (
            not start.timestamp() - self._tolerance_s
            <= opening.at.timestamp()
            <= (prev.at.timestamp())
        ):
            return None
        if any(prev.registers[key] < value for key, value in opening.registers.items()):
            return None
        return opening

    def resume(
        self, state: RegisterState | Sample, *, opening: RegisterState | Sample | None = None
    ) -> bool:
        """Carry on from the last reading seen before a stop, whenever that was (the
        history keeps it): the interval from it to the first live reading is booked by
        the usual rules (a gap when it spans quarters, with the energy that passed), and
        a meter swapped meanwhile is flagged replaced. With `opening` (see
        `quarter_opening`) a restart inside the same quarter continues it whole. Call
        before the first `feed`."""
        if self._prev is not None:
            return False
        prev = state if isinstance(state, Sample) else sample_from_state(state)
        self._begin(prev)
        assert self._quarter is not None and self._day is not None
        self._quarter.start_missing = True
        self._day.start_missing = True
        self._continue_quarter(self._quarter, prev, opening)
        return True
