"""The shipped configuration files load, and the example documents every key."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from p1daemon.config import load_config
from p1daemon.config.model import MeterConfig
from p1daemon.config.schema import model_of
from p1daemon.config.section import Section
from p1daemon.publish.settings import BufferSettings, MqttSettings
from p1daemon.views.energy.settings import SiteSettings
from p1daemon.views.history.settings import HistorySettings
from p1daemon.views.homeassistant.settings import HomeAssistantSettings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "config" / "p1daemon.example.toml"
DEMO = REPO / "config" / "demo.toml"


def section_text(name: str) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    header = re.search(rf"^\[{re.escape(name)}\]$", text, re.MULTILINE)
    assert header, f"no [{name}] table in {EXAMPLE.name}"
    following = re.search(r"^\[", text[header.end() :], re.MULTILINE)
    return text[header.start() : header.end() + following.start() if following else len(text)]


# Keys that are refused without another key (config/rules.py): their default can only be
# shown commented out, next to the commented example of the key they need.
ONLY_WITH = {"export_limit_hold_s": "export_limit_kw"}


@pytest.mark.parametrize(
    ("section", "model"),
    [
        ("mqtt", MqttSettings),
        ("buffer", BufferSettings),
        ("homeassistant", HomeAssistantSettings),
        ("site", SiteSettings),
        ("history", HistorySettings),
        ("[meters]", MeterConfig),
    ],
)
def test_example_documents_every_key_with_its_default(section: str, model: type[Section]) -> None:
    text = section_text(section)
    for name, field in model_of(model).model_fields.items():
        match = re.search(rf"^#? ?{name} = (.*?)(\s+#.*)?$", text, re.MULTILINE)
        assert match, f"[{section}] {name} is not documented in {EXAMPLE.name}"
        default: Any = field.get_default(call_default_factory=False)
        if field.is_required() or default is None or field.default_factory is not None:
            continue
        if hasattr(default, "get_secret_value"):
            default = default.get_secret_value()
        shown = tomllib.loads(f"v = {match.group(1)}")["v"]
        assert shown == default, f"[{section}] {name}: documented {shown!r}, default {default!r}"
        if name in ONLY_WITH:
            assert re.search(rf"^# {ONLY_WITH[name]} = ", text, re.MULTILINE), name
            continue
        assert not match.group(0).startswith("#"), f"[{section}] {name}: default shown commented"


def test_example_is_valid_as_shipped() -> None:
    config = load_config(EXAMPLE, {})
    assert [m.name for m in config.meters] == ["house"]


def test_demo_is_two_metering_points_of_live_synthetic_meters() -> None:
    # issue 9 item 16: no longer looped captures (their registers stepped back every loop)
    config = load_config(DEMO, {})
    assert [(m.name, m.role) for m in config.meters] == [
        ("house", "primary"),
        ("carport", "secondary"),
    ]
    assert config.meters[1].ean is not None
    assert config.meters[0].source == "demo:house?speed=24"
    assert not any(m.finite for m in config.meters)
