#!/usr/bin/env bash
# One command from a fresh checkout to p1daemon at work. For now (the telegram engine)
# it decodes the bundled demo captures and prints one JSON reading per telegram.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/p1daemon parse fixtures/demo/*.txt "$@"
