#!/usr/bin/env bash
# Sweeps against a real Slurm: starts the one-node cluster (scripts/slurm-cluster.sh), submits the
# smoke presets of `distill` (students need the teacher) and `decouple` (stage 2 needs stage 1)
# as job arrays written by `sweep slurm`, waits for them, checks that each merged summary has the
# same numbers as a single process's run, and stops every daemon it started (also on failure).
#
#   scripts/slurm-sweep-test.sh            # needs root (the cluster) and ../shared beside the checkout
#
# Uses the dev-profile binaries (`cargo build --bins`, which CI's `cargo test` has already built).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
export HF_HOME=${HF_HOME:-$ROOT/../shared/hf}
export HF_HUB_OFFLINE=1
CIFAR=$ROOT/../shared/data/cifar10-jpeg
[ -d "$HF_HOME/hub" ] && [ -d "$CIFAR" ] || { echo "needs ../shared (hf/, data/cifar10-jpeg)" >&2; exit 1; }
W=${ZOO_SWEEP_TEST_DIR:-/tmp/zoo-slurm-sweep-test}
rm -rf "$W" && mkdir -p "$W"
start=$(date +%s)

cargo build --bins --quiet
# Cargo's output folder: $CARGO_TARGET_DIR when set (relative to the repository root), else target/.
TARGET=${CARGO_TARGET_DIR:-target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
BIN=$TARGET/debug

export ZOO_SLURM_DIR=$W/cluster
trap 'scripts/slurm-cluster.sh stop' EXIT
scripts/slurm-cluster.sh start
eval "$(scripts/slurm-cluster.sh env)"

# A test compares numbers only: it may run from a work tree with uncommitted changes.
DIRTY=""
"$BIN/distill" --help | grep -q -- --allow-dirty && DIRTY="--allow-dirty"
# name|flags of each smoke sweep (one seed; --threads 1 everywhere: the Slurm tasks get one CPU)
SWEEPS=(
  "distill|--preset smoke --threads 1 $DIRTY"
  "decouple|--preset smoke --threads 1 $DIRTY --data-dir $CIFAR"
)
jobs=()
for s in "${SWEEPS[@]}"; do
  name=${s%%|*}; read -r -a flags <<< "${s#*|}"
  "$BIN/sweep" slurm --script "$W/sweep-$name.sh" --logs "$W/logs" --cpus-per-task 1 \
    "$BIN/$name" "${flags[@]}" --out "$W/$name-sweep"
  bash "$W/sweep-$name.sh"
  read -r -a ids < "$W/logs/$name.jobs"
  jobs+=("${ids[@]}")
done
# While Slurm works, the same experiments in one process each.
for s in "${SWEEPS[@]}"; do
  name=${s%%|*}; read -r -a flags <<< "${s#*|}"
  "$BIN/$name" "${flags[@]}" --out "$W/$name-single" > "$W/$name-single.log" 2>&1 \
    || { cat "$W/$name-single.log" >&2; exit 1; }
done
echo "single-process runs done after $(( $(date +%s) - start )) s; waiting for jobs ${jobs[*]}"
list=$(IFS=,; echo "${jobs[*]}")
for _ in $(seq 600); do
  [ -z "$(squeue -h -j "$list" -o %i 2>/dev/null)" ] && break
  sleep 1
done
if [ -n "$(squeue -h -j "$list" -o %i 2>/dev/null)" ]; then
  squeue >&2; echo "jobs did not finish in 10 min" >&2; exit 1
fi
status=0
for s in "${SWEEPS[@]}"; do
  name=${s%%|*}; read -r -a flags <<< "${s#*|}"
  n_logs=$(ls "$W/logs/$name"-L*.log | wc -l)
  n_runs=$("$BIN/$name" "${flags[@]}" --list-runs | wc -l)
  if [ "$n_logs" != "$n_runs" ]; then
    echo "$name: $n_logs task logs for $n_runs runs" >&2; status=1
  fi
  if ! "$BIN/sweep" compare "$W/$name-single/summary.json" "$W/$name-sweep/summary.json"; then
    status=1
    tail -n 30 "$W/logs/$name"-*.log >&2 || true
  else
    echo "$name: $n_runs runs as $n_logs array tasks; merged summary = single-process summary"
  fi
done
echo "slurm sweep test finished in $(( $(date +%s) - start )) s"
exit $status
