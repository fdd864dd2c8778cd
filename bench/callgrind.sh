#!/usr/bin/env bash
# Instructions per command under callgrind: repeatable on a noisy machine, since it counts
# instructions, not seconds.
#
#   bench/callgrind.sh [COMMANDS]          (default 200000)
#
# Matcher alone: `matcher_loop` generates the exchange-core stream (not counted), then runs
# the matcher over it inside the #[inline(never)] function `run_matcher`, and only that
# function is counted (--toggle-collect). The figure includes the 1001 setup commands'
# instructions in the numerator and denominator alike (they are the same kind of work).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200000}"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
cargo build --release -q -p ringex-bench --bin matcher_loop
out="$(mktemp -d)"
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" \
  --toggle-collect='*run_matcher*' ./target/release/matcher_loop "$n" >"$out/stdout" 2>"$out/stderr"
total=$(grep -E '^(summary|totals):' "$out/cg.out" | head -1 | awk '{print $2}')
setup=$(grep -o 'setup commands [0-9]*' "$out/stdout" | awk '{print $3}')
cmds=$((n + setup))
echo "matcher alone (exchange-core mix, seed 1): $total instructions / $cmds commands = $((total / cmds)) instructions per command"
echo "profile: $out/cg.out (callgrind_annotate $out/cg.out)"
