"""The views' documents publish the bytes the former pydantic models did, and read the day
document and a quarter's opening back as they did.

The oracle is tests/view_oracle.py: the pydantic models p1daemon used until issue 16.
Generated documents (every field drawn, floats and datetimes included) cover field order,
JSON names, nulls and number spellings at once; the rules that a generated document
would only hit by chance (an int given for a float field, a field left at its default)
have tests of their own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import typing
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import view_oracle
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from test_reading_encode import _datetimes, _strategy, as_python

from p1daemon.views.capacity.documents import (
    CapacityAlert,
    CapacityState,
    QuarterClosed,
)
from p1daemon.views.document import ViewDoc, document_json
from p1daemon.views.energy.documents import DayDoc, Energy, QuarterDoc, RegisterState
from p1daemon.views.energy.export_cap import ExportLimitAlert
from p1daemon.views.energy.settings import Topology
from p1daemon.views.energy.site import ConnectionDoc
from p1daemon.views.history.month import MonthDoc

REPO = Path(__file__).resolve().parents[1]
CET = timezone(timedelta(hours=1))
AT = datetime(2026, 11, 30, 23, 45, tzinfo=CET)
# The fields every quarter and day document has (`_Period`), without an EAN.
PERIOD: dict[str, Any] = {
    "meter": "house",
    "role": "primary",
    "start": AT,
    "end": AT + timedelta(minutes=15),
    "complete": False,
    "start_missing": False,
    "end_missing": False,
    "meter_replaced": False,
    "registers_changed": False,
}
PUBLISHED = [
    QuarterDoc,
    DayDoc,
    RegisterState,
    ConnectionDoc,
    ExportLimitAlert,
    CapacityState,
    CapacityAlert,
    QuarterClosed,
    MonthDoc,
]


def oracle_of(document: ViewDoc) -> type[BaseModel]:
    found: type[BaseModel] = getattr(view_oracle, type(document).__name__)
    return found


def oracle_json(document: ViewDoc, *, strict: bool = True) -> str:
    model = oracle_of(document).model_validate(as_python(document), strict=strict)
    return model.model_dump_json()


def _hint_strategy(hint: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, typing.get_origin(int | None)):
        return st.one_of(*map(_hint_strategy, args))
    if origin is list:
        return st.lists(_hint_strategy(args[0]), max_size=2)
    if isinstance(hint, type) and issubclass(hint, ViewDoc):
        return view_documents(hint)
    if hint is date:
        return st.dates()
    if hint is datetime:
        return _datetimes
    return _strategy(hint)  # floats (NaN, 1e-05, -0.0...), texts, ints, Literals, None


def view_documents(cls: type[ViewDoc]) -> st.SearchStrategy[ViewDoc]:
    """Any document of `cls`, made by keyword construction, every field drawn."""
    hints = typing.get_type_hints(cls, localns={"Topology": Topology})
    fields = {spec.name: _hint_strategy(hints[spec.name]) for spec in cls._specs}
    return st.fixed_dictionaries(fields).map(lambda values: cls(**values))


_any_published = st.sampled_from(PUBLISHED).flatmap(view_documents)


@given(_any_published)
@settings(max_examples=200, deadline=None)
def test_generated_documents_encode_as_the_models_did(document: ViewDoc) -> None:
    expected = oracle_json(document)
    assert document_json(document) == expected.encode()
    assert document.model_dump_json() == expected


@given(st.sampled_from([DayDoc, RegisterState]).flatmap(view_documents))
@settings(max_examples=100, deadline=None)
def test_read_back_as_the_models_did(document: ViewDoc) -> None:
    """What `EnergyTracker.restore` reads: both take the same texts, to the same values."""
    text = document_json(document)
    oracle = oracle_of(document)
    try:
        expected = oracle.model_validate_json(text).model_dump_json()
    except ValidationError:  # a NaN written as null where null is not allowed
        with pytest.raises(ValueError):
            type(document).model_validate_json(text)
        return
    assert type(document).model_validate_json(text).model_dump_json() == expected


def test_an_int_for_a_float_field_is_published_as_a_float() -> None:
    """`limit_kw = 3` in the configuration, `hold_s = 60`: the models wrote 3.0 and 60.0
    (subscribers comparing types, or texts, see no change); an int field stays an int."""
    alert = ExportLimitAlert(
        meter="house",
        active=False,
        limit_kw=3,
        hold_s=60,
        above_since=None,
        raised_at=None,
        cleared_at=None,
        export_kw=None,
        peak_kw=None,
    )
    text = document_json(alert).decode()
    assert '"limit_kw":3.0,"hold_s":60.0' in text
    assert text == oracle_json(alert, strict=False)
    month = MonthDoc(
        meter="house",
        role="primary",
        month="2026-11",
        start=AT,
        end=AT,
        hours=720,
        final=False,
        complete=False,
        quarters=2880,
        complete_quarters=0,
        gaps=0,
        replacements=0,
    )
    text = document_json(month).decode()
    assert '"hours":720.0' in text and '"quarters":2880,' in text
    assert text == oracle_json(month, strict=False)


def test_defaults_are_published_as_null_never_left_out() -> None:
    """A register the meter does not send is null in every block; a missing EAN too."""
    quarter = QuarterDoc(**{**PERIOD, "start_missing": True}, readings=1)
    published = json.loads(document_json(quarter))
    assert published["import"] == dict.fromkeys(
        ["t1_kwh", "t2_kwh", "t3_kwh", "t4_kwh", "total_kwh"]
    )
    assert published["ean"] is None and published["gap_before"] is None
    assert published["status"] == "partial"
    assert list(published)[-3:] == ["gap_before", "readings", "status"]  # after the base's
    assert document_json(quarter).decode() == oracle_json(quarter)


def _day() -> DayDoc:
    return DayDoc(**PERIOD, date=date(2026, 11, 30), hours=24.0, final=False, quarters=1)


def test_a_day_document_reads_back_equal() -> None:
    day = _day().model_copy(
        update={
            "date": date(2026, 10, 25),
            "start": datetime(2026, 10, 25, tzinfo=timezone(timedelta(hours=2))),
            "end": datetime(2026, 10, 26, tzinfo=CET),
            "hours": 25.0,
            "import_": Energy(t1_kwh=1.5, total_kwh=1.5),
            "last_reading": RegisterState(at=datetime(2026, 10, 25, 22, 59, tzinfo=UTC)),
        }
    )
    again = DayDoc.model_validate_json(document_json(day))
    assert again == day
    assert again.last_reading is not None and again.last_reading.at.tzinfo is UTC
    assert document_json(again) == document_json(day)


@pytest.mark.parametrize(
    "text",
    [
        b"not json",
        b"[]",
        b"{}",
        b'{"at": null}',
        b'{"at": "2026-11-30T23:45:00+01:00", "import": []}',
        b'{"at": "2026-11-30T23:45:00+01:00", "import": {"t1_kwh": [1.0]}}',
        b'{"at": "2026-11-30T23:45:00+01:00", "surprise": 1}',
        b'{"at": "yesterday"}',
        b'{"at": "2026-11-30T23:45:00+01:00", "equipment_id": 7}',
        b"\xff",
        b"[" * 100_000,
    ],
)
def test_what_the_models_refused_is_refused_with_a_value_error(text: bytes) -> None:
    with pytest.raises(ValueError):
        view_oracle.RegisterState.model_validate_json(text)
    with pytest.raises(ValueError):
        RegisterState.model_validate_json(text)


def test_a_literal_is_checked_when_read_back() -> None:
    state = document_json(RegisterState(at=AT))
    day = {**json.loads(document_json(_day())), "last_reading": json.loads(state)}
    assert DayDoc.model_validate_json(json.dumps(day)).role == "primary"
    with pytest.raises(ValueError):
        DayDoc.model_validate_json(json.dumps({**day, "role": "tertiary"}))
    with pytest.raises(ValueError):
        DayDoc.model_validate_json(json.dumps({**day, "date": "2026-11-31"}))


CLEAN = [
    "p1daemon.views.document",
    "p1daemon.views.energy.documents",
    "p1daemon.views.energy.export_cap",
    "p1daemon.views.energy.site",
    "p1daemon.views.capacity.documents",
    "p1daemon.views.capacity.processor",
    "p1daemon.views.energy.tracker",
    "p1daemon.views.history.month",
    "p1daemon.views.history.processor",
]


def test_the_documents_do_not_import_pydantic() -> None:
    """Issue 16: pydantic is ~8 MB of the daemon's RSS (the settings these modules read
    are plain dataclasses too, see p1daemon.config.section)."""
    code = (
        "import importlib, sys\n"
        f"for name in {CLEAN!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.partition('.')[0].startswith('pydantic')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert proc.stdout.strip() == "[]"


@given(_any_published)
@settings(max_examples=50, deadline=None)
def test_model_dump_as_the_models_did(document: ViewDoc) -> None:
    """Tests and tools read documents as dicts; NaN compares unequal, so via JSON text."""
    model = oracle_of(document).model_validate(as_python(document), strict=True)
    assert document.model_dump(mode="json") == json.loads(model.model_dump_json())
    python = document.model_dump()
    expected = model.model_dump()
    assert json.dumps(python, default=str) == json.dumps(expected, default=str)
