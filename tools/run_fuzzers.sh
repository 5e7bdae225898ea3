#!/usr/bin/env bash
# Runs every libFuzzer target of a -DRLVR_FUZZ=ON build for SECONDS each, starting from its
# committed seed corpus (read-only: new inputs go to a scratch directory). Fails on the first
# crash, sanitizer report, leak or input slower than the per-input timeout.
# The file-format and config fuzzers (fuzz_safetensors, fuzz_config, fuzz_jsonl) run SECONDS;
# the others run BRIEF_SECONDS (default 15) so that CI stays within its time budget.
# usage: tools/run_fuzzers.sh BUILD_DIR SECONDS
set -euo pipefail
build=${1:?build dir}
secs=${2:-60}
list="$build/fuzzers.txt"
if [ ! -s "$list" ]; then
  echo "run_fuzzers: no fuzz targets listed in $list" >&2
  exit 1
fi
export RLVR_SOURCE_DIR=${RLVR_SOURCE_DIR:-$(pwd)}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
status=0
while read -r name corpus; do
  [ -n "$name" ] || continue
  bin="$build/bin/$name"
  if [ ! -x "$bin" ]; then
    echo "run_fuzzers: $bin was not built" >&2
    exit 1
  fi
  t=$secs
  case "$name" in
    fuzz_safetensors|fuzz_config|fuzz_jsonl) ;;
    *) t=${BRIEF_SECONDS:-15}; [ "$t" -gt "$secs" ] && t=$secs ;;
  esac
  mkdir -p "$scratch/$name" "$scratch/$name.artifacts"
  if [ ! -d "$corpus" ]; then
    echo "run_fuzzers: $name: seed corpus $corpus is missing; starting from an empty corpus" >&2
    corpus="$scratch/$name"
  fi
  echo "run_fuzzers: $name for ${t}s (corpus $corpus)" >&2
  if ! "$bin" -max_total_time="$t" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$scratch/$name.artifacts/" "$scratch/$name" "$corpus" \
      >"$scratch/$name.log" 2>&1; then
    echo "run_fuzzers: $name FAILED; last lines of its log:" >&2
    tail -n 60 "$scratch/$name.log" >&2
    for a in "$scratch/$name.artifacts"/*; do
      [ -f "$a" ] && { echo "artifact $a (base64):" >&2; head -c 4096 "$a" | base64 >&2; }
    done
    status=1
  else
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$scratch/$name.log" | tail -n 2 >&2 || true
  fi
done <"$list"
exit $status
