#!/usr/bin/env bash
# One prepared check for when a GPU is lent (issue 25): ~15 minutes of device time, one call.
#
#   scripts/gpu-check.sh            on a CUDA machine: build with --features cuda (and cudnn where
#                                   it builds), run every smoke preset on the GPU and on the CPU
#                                   (fast path) and compare their numbers, time a slice of each
#                                   paper preset, write results/gpu/<UTC date>/.
#   scripts/gpu-check.sh --cpu      a dry run of all of that on the CPU with --backend candle (the
#                                   GPU's op sequence), no CUDA build; part of the tests.
#
# Options: --bin-dir DIR  use binaries already built there (no build); --only a,b  these binaries;
#          --out DIR      instead of results/gpu/<date>; --slice SECONDS  paper-preset slice (60);
#          --slice-preset P  the preset of the slice (paper; the test of --cpu uses smoke, seconds).
#
# What it writes: build.txt (features that built), smoke-<bin>.json (per binary: the compared
# numbers and any beyond tolerance), paper-<bin>.txt (the binary's --dry-run: resolved config, runs,
# steps, ms/step of each kind of step here and the projected time of the whole preset; or, for a
# binary without a dry run, the tail of a timed slice of the preset), summary.md (one line each).
# Exit status: non-zero when a build fails, a smoke preset fails or disagrees, or a dry run fails.
# tests/integration/gpu_check.rs runs `--cpu` (one binary, smoke slice) with the tests.
set -uo pipefail
cd "$(dirname "$0")/.."

cpu=0; bin_dir=""; only=""; out=""; slice=60; slice_preset=paper
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) cpu=1 ;;
    --bin-dir) bin_dir="$2"; shift ;;
    --only) only="$2"; shift ;;
    --out) out="$2"; shift ;;
    --slice) slice="$2"; shift ;;
    --slice-preset) slice_preset="$2"; shift ;;
    -h|--help) sed -n 2,22p "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

binaries="distill confidence_penalty bagging l2rw mwn mlnt decouple"
[ -n "$only" ] && binaries="${only//,/ }"
[ -z "$out" ] && out="results/gpu/$(date -u +%Y-%m-%d)"
mkdir -p "$out"
export HF_HOME="${HF_HOME:-$(cd .. && pwd)/shared/hf}"
export HF_HUB_OFFLINE=1
cifar="$(cd .. && pwd)/shared/data/cifar10-jpeg"
status=0
summary="$out/summary.md"
{
  echo "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ), $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  if [ "$cpu" = 1 ]; then echo "Dry run on the CPU (--cpu): device = CPU, backend = candle."
  else nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | sed 's/^/GPU: /'; fi
  echo
} > "$summary"

# --- build -------------------------------------------------------------------------------------
if [ -z "$bin_dir" ]; then
  bin_dir=target/release
  if [ "$cpu" = 1 ]; then
    features=""
  else
    features="cuda"
    if cargo build --release --features cudnn >"$out/build-cudnn.log" 2>&1; then
      features="cudnn"
    fi
  fi
  if ! cargo build --release ${features:+--features $features} >"$out/build.log" 2>&1; then
    echo "build with features '${features}' FAILED (see build.log)" | tee -a "$summary" >&2
    exit 1
  fi
  echo "built with features: ${features:-none}" > "$out/build.txt"
  echo "- build: features ${features:-none}" >> "$summary"
fi

# The GPU run's device flags, and the reference run's (always the CPU's fast path).
# --allow-dirty: these are checks, not protocol results (a lent machine's copy of the tree, or a
# test's, need not be a clean commit).
if [ "$cpu" = 1 ]; then dev_flags=(--cpu --backend candle --allow-dirty); else dev_flags=(--allow-dirty); fi
ref_flags=(--cpu --backend fast --allow-dirty)

data_flags() { # the data flags of a binary's smoke and paper presets
  case "$1" in
    l2rw) echo "--cifar-dir $cifar" ;;
    mwn|mlnt|decouple|confidence_penalty) echo "--data-dir $cifar" ;;
    *) echo "" ;;
  esac
}

# --- smoke presets: device vs CPU -----------------------------------------------------------------
for b in $binaries; do
  exe="$bin_dir/$b"
  [ -x "$exe" ] || { echo "- $b: no binary at $exe" | tee -a "$summary"; status=1; continue; }
  # shellcheck disable=SC2046
  if ! "$exe" --preset smoke $(data_flags "$b") "${dev_flags[@]}" --out "$out/smoke/$b/device" \
        >"$out/smoke-$b-device.log" 2>&1; then
    echo "- $b smoke on the device: FAILED (smoke-$b-device.log)" | tee -a "$summary"; status=1; continue
  fi
  # shellcheck disable=SC2046
  if ! "$exe" --preset smoke $(data_flags "$b") "${ref_flags[@]}" --out "$out/smoke/$b/cpu" \
        >"$out/smoke-$b-cpu.log" 2>&1; then
    echo "- $b smoke on the CPU: FAILED (smoke-$b-cpu.log)" | tee -a "$summary"; status=1; continue
  fi
  if python3 scripts/gpu_compare.py "$out/smoke/$b/cpu/summary.json" \
       "$out/smoke/$b/device/summary.json" > "$out/smoke-$b.json"; then
    echo "- $b smoke: device agrees with the CPU ($(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["worst"])' "$out/smoke-$b.json"))" >> "$summary"
  else
    echo "- $b smoke: device DISAGREES with the CPU (smoke-$b.json)" | tee -a "$summary"; status=1
  fi
done

# --- paper presets: --dry-run projection, else a timed slice ----------------------------------
slice_flags() { # what the slice adds: mlnt's paper preset lists Clothing1M, not runnable offline
  case "$1" in
    mlnt) echo "--parts cifar" ;;
    *) echo "" ;;
  esac
}
for b in $binaries; do
  exe="$bin_dir/$b"
  [ -x "$exe" ] || continue
  f="$out/paper-$b.txt"
  # shellcheck disable=SC2046
  timeout "$((slice * 3))" "$exe" --preset "$slice_preset" $(data_flags "$b") $(slice_flags "$b") \
    "${dev_flags[@]}" --dry-run --out "$out/paper/$b" >"$f" 2>&1
  rc=$?; dried=0
  if [ "$rc" = 0 ]; then
    dried=1
    echo "- $b $slice_preset: $(grep -m1 'projected wall time' "$f" | sed 's/^[0-9]* runs, //') (--dry-run, paper-$b.txt)" >> "$summary"
  elif grep -q "has no dry run" "$f"; then
    start=$(date +%s)
    # shellcheck disable=SC2046
    timeout "$slice" "$exe" --preset "$slice_preset" $(data_flags "$b") "${dev_flags[@]}" \
      --out "$out/paper/$b" >"$f.log" 2>&1
    rc=$?
    tail -n 40 "$f.log" > "$f"; rm -f "$f.log"
    echo "- $b $slice_preset: ${slice}-s slice ran $(( $(date +%s) - start )) s (exit $rc; 124 = cut at the slice), no --dry-run in this binary yet: read steps/s from paper-$b.txt" >> "$summary"
  else
    echo "- $b $slice_preset: --dry-run FAILED (exit $rc, paper-$b.txt)" | tee -a "$summary"; status=1
  fi
  if [ "$dried" = 1 ] && [ -e "$out/paper/$b" ]; then
    echo "- $b $slice_preset: --dry-run WROTE $out/paper/$b" | tee -a "$summary"; status=1
  fi
  rm -rf "$out/paper/$b"
done

rm -rf "$out/smoke"
echo >> "$summary"
echo "exit status: $status" >> "$summary"
cat "$summary"
exit "$status"
