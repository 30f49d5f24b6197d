"""The folder layout is the path of a reading, and imports must follow it.

`source/ -> frame/ -> parse/ -> reading/ -> daemon/` (dispatch) `-> views/...`
(processors) `-> publish/`, stdout (outputs). An output knows nothing of what produced
the documents it delivers; a view knows nothing of how they are delivered. Checked on
the source (every `import` and `from ... import`, also inside functions and
`TYPE_CHECKING` blocks), so a new module cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "p1daemon"

# The views may use the topic naming scheme and the compact JSON encoder (the same bytes
# as every other retained document); nothing else of the MQTT layer.
VIEWS_MAY_USE_FROM_PUBLISH = frozenset({"p1daemon.publish.topics", "p1daemon.publish.payload"})


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("p1daemon")}


def modules(folder: str) -> list[Path]:
    paths = sorted((PACKAGE / folder).rglob("*.py"))
    assert paths, f"no modules under p1daemon/{folder}"
    return paths


def offending(folder: str, forbidden: str, allowed: frozenset[str] = frozenset()) -> list[str]:
    out = []
    for path in modules(folder):
        for name in sorted(imports_of(path)):
            if (name == forbidden or name.startswith(forbidden + ".")) and not any(
                name == a or name.startswith(a + ".") for a in allowed
            ):
                out.append(f"{path.relative_to(PACKAGE.parent)} imports {name}")
    return out


def test_publish_imports_no_view() -> None:
    assert offending("publish", "p1daemon.views") == []


@pytest.mark.parametrize("old", ["p1daemon.energy", "p1daemon.homeassistant"])
def test_nothing_imports_the_old_view_packages(old: str) -> None:
    assert not (PACKAGE / old.split(".")[1]).exists()
    assert offending(".", old) == []


def test_views_use_nothing_of_the_mqtt_layer_but_topic_names_and_the_encoder() -> None:
    assert offending("views", "p1daemon.publish", VIEWS_MAY_USE_FROM_PUBLISH) == []


def test_the_energy_views_use_nothing_of_the_mqtt_layer_at_all() -> None:
    assert offending("views/energy", "p1daemon.publish") == []


@pytest.mark.parametrize("folder", ["views", "publish"])
def test_neither_processors_nor_outputs_reach_into_the_daemon_beyond_its_contract(
    folder: str,
) -> None:
    """They implement `daemon.processor`'s protocols; the dispatcher, the builder and the
    daemon itself drive them, never the other way round."""
    allowed = frozenset({"p1daemon.daemon.processor"})
    assert offending(folder, "p1daemon.daemon", allowed) == []


def test_the_checker_sees_an_offending_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from p1daemon.views.energy.tracker import EnergyTracker\n"
        "def f():\n"
        "    import p1daemon.views.homeassistant.announcer\n"
    )
    assert imports_of(sample) >= {
        "p1daemon.views.energy.tracker",
        "p1daemon.views.homeassistant.announcer",
    }


@pytest.mark.parametrize("module", ["processor.py", "dispatcher.py"])
@pytest.mark.parametrize("forbidden", ["p1daemon.views", "p1daemon.publish"])
def test_the_dispatcher_knows_no_particular_processor_or_output(
    module: str, forbidden: str
) -> None:
    """Only the builder (daemon/builder.py) names the concrete views and outputs."""
    names = imports_of(PACKAGE / "daemon" / module)
    assert [n for n in names if n == forbidden or n.startswith(forbidden + ".")] == []
