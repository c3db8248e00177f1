#!/usr/bin/env bash
# The refactoring guard of the reweighting papers: runs the l2rw, mwn and mlnt smoke presets
# (through their integration tests, the same binaries CI builds) and compares each summary's
# numbers with tests/golden/<binary>_smoke.json: bit for bit on the CPU that recorded them, within
# ZOO_GOLDEN_RTOL (default 1e-3) elsewhere. `--record` rewrites the baseline from this tree.
#
#   scripts/smoke-guard.sh            # compare
#   scripts/smoke-guard.sh --record   # record (before a refactoring, on a clean tree)
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-}" in
  --record) export ZOO_GOLDEN_RECORD=1 ;;
  "") ;;
  *) echo "usage: $0 [--record]" >&2; exit 2 ;;
esac
export HF_HOME="${HF_HOME:-$(cd .. && pwd)/shared/hf}"
export HF_HUB_OFFLINE=1

cargo test --test integration -- --exact --test-threads 1 \
  l2rw_cli::smoke_preset_end_to_end \
  mwn_cli::smoke_preset_end_to_end \
  mlnt::smoke_preset_end_to_end
