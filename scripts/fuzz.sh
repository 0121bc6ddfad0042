#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for a while; a crash becomes a regression input.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 seconds, every target)
#
# - installs cargo-fuzz (`cargo install cargo-fuzz --locked`) when missing;
# - uses rustup's nightly toolchain, or the installed one with RUSTC_BOOTSTRAP=1 when there is
#   no nightly (cargo-fuzz needs nightly-only compiler flags);
# - runs the targets one after another, each in one process (libFuzzer's default: one job, one
#   worker), growing fuzz/corpus/<target>/ (git-ignored) from the committed fuzz/seeds/<target>/;
# - on a crash, timeout or out-of-memory, copies the input to fuzz/regressions/<target>/ (commit
#   it: tests/fuzz_regressions.rs replays it in every `cargo test`), goes on with the next
#   target, and exits non-zero at the end;
# - prints each target's run length and executions per second (logs: fuzz/artifacts/<target>.log).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

seconds="${1:-60}"
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(check_request token security_event config revocation_log)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

# The longest input worth trying per target: a bit more than the largest the code accepts
# (an 8 KiB Authorization header, a config of a few KiB, a log of six records and its damage).
max_len() {
  case "$1" in
    token | security_event) echo 9000 ;;
    check_request | config) echo 16384 ;;
    revocation_log) echo 256 ;;
    *) echo 4096 ;;
  esac
}

echo "== building the fuzz targets"
"${fuzz[@]}" build

failed=()
summary=()
for target in "${targets[@]}"; do
  corpus="fuzz/corpus/$target"
  artifacts="fuzz/artifacts/$target"
  log="fuzz/artifacts/$target.log"
  mkdir -p "$corpus" "$artifacts"
  # Inputs of earlier runs were kept in fuzz/regressions/ already.
  rm -f "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* "$artifacts"/leak-*
  echo "== fuzzing $target for ${seconds}s"
  status=0
  "${fuzz[@]}" run "$target" "$corpus" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$target")" -artifact_prefix="$artifacts/" -print_final_stats=1 \
    >"$log" 2>&1 || status=$?
  runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  took="$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log" | tail -n 1)"
  rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)"
  summary+=("$target: ${runs:-?} runs in ${took:-?}s, ${rate:-?} execs/s, exit $status")
  if [ "$status" -ne 0 ]; then
    mkdir -p "fuzz/regressions/$target"
    found=0
    for input in "$artifacts"/crash-* "$artifacts"/timeout-* "$artifacts"/oom-* \
      "$artifacts"/leak-*; do
      [ -f "$input" ] || continue
      cp "$input" "fuzz/regressions/$target/"
      echo "   $target: kept $(basename "$input") in fuzz/regressions/$target/"
      found=1
    done
    [ "$found" -eq 1 ] || echo "   $target failed without an input; see $log"
    tail -n 40 "$log"
    failed+=("$target")
  fi
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (inputs in fuzz/regressions/; replay: cargo test --test fuzz_regressions)"
  exit 1
fi
