#!/usr/bin/env bash
# One command from a fresh checkout to a full test run: system packages, virtualenv,
# lint, type check and the whole pytest suite (which replays ../shared/fixtures).
set -euo pipefail
cd "$(dirname "$0")/.."
P1DAEMON_EXTRAS=dev P1DAEMON_APT_EXTRA="mosquitto mosquitto-clients socat" bash scripts/bootstrap.sh
.venv/bin/ruff check p1daemon tests bench
.venv/bin/ruff format --check p1daemon tests bench
.venv/bin/mypy
exec .venv/bin/pytest -q "$@"
