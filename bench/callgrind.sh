#!/usr/bin/env bash
# Instructions per command under callgrind: repeatable on a noisy machine, since it counts
# instructions, not seconds.
#
#   bench/callgrind.sh [COMMANDS]          (default 200000; FUNDED=1: the funded mix)
#   WORKLOAD="--multi" bench/callgrind.sh  (any other `matcher_loop` workload: --multi,
#                                           "--deep calm", "--lobster FILE")
#   BRANCHES=1 bench/callgrind.sh          (also callgrind's branch simulator: conditional and
#                                           indirect mispredicts per command. Its predictor is
#                                           simpler than the CPU's: a branch on a condition as
#                                           random as the flow shows in both, an alternating
#                                           pattern only in the simulator)
#
# Matcher alone: `matcher_loop` generates the stream (not counted), then runs the matcher
# over its setup (the instruments, the starting book) and its measured commands inside the
# #[inline(never)] function `run_matcher`, and only that function is counted
# (--toggle-collect). The figure includes the setup commands' instructions in the numerator
# and the denominator alike (1,001 of 201,001 commands for the exchange-core mix, 21,000
# for the multi-symbol flow, 1 to 3 for the deep flow and LOBSTER).
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200000}"
command -v valgrind >/dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 1; }
cargo build --release -q -p ringex-bench --bin matcher_loop
out="$(mktemp -d)"
# shellcheck disable=SC2086
valgrind --tool=callgrind --callgrind-out-file="$out/cg.out" ${BRANCHES:+--branch-sim=yes} \
  --toggle-collect='*run_matcher*' ./target/release/matcher_loop "$n" ${FUNDED:+--funded} ${WORKLOAD:-} >"$out/stdout" 2>"$out/stderr"
total=$(grep -E '^(summary|totals):' "$out/cg.out" | head -1 | awk '{print $2}')
setup=$(grep -o 'setup commands [0-9]*' "$out/stdout" | awk '{print $3}')
cmds=$(( $(grep -o 'measured commands [0-9]*' "$out/stdout" | awk '{print $3}') + setup ))
name=$(cut -d: -f1 "$out/stdout")
echo "matcher alone ($name): $total instructions / $cmds commands = $((total / cmds)) instructions per command"
if [ -n "${BRANCHES:-}" ]; then
  # summary: Ir Bc Bcm Bi Bim
  read -r _ _ bc bcm bi bim < <(grep -E '^(summary|totals):' "$out/cg.out" | head -1)
  awk -v bc="$bc" -v bcm="$bcm" -v bi="$bi" -v bim="$bim" -v n="$cmds" 'BEGIN {
    printf "branches per command: %.1f conditional (%.2f mispredicted), %.2f indirect (%.2f mispredicted)\n", bc/n, bcm/n, bi/n, bim/n }'
fi
echo "profile: $out/cg.out (callgrind_annotate $out/cg.out)"

# The pipeline: the same stream through gateway -> input ring -> matcher -> output ring -> 4
# counting consumers, counting the matcher stage and the consumer stages (their polling
# included; stages sleep 50 µs when idle so that idle polling stays small under valgrind,
# which runs one thread at a time).
if [ "${PIPELINE:-1}" = 1 ]; then
  m=$((n / 4))
  cargo build --release -q -p ringex-bench --bin topologies
  valgrind --tool=callgrind --callgrind-out-file="$out/cg-pipeline.out" \
    --toggle-collect='*matcher_loop*' --toggle-collect='*consumer_loop*' \
    ./target/release/topologies pipeline --commands "$m" --runs 1 --no-baseline --idle sleep >"$out/stdout2" 2>"$out/stderr2"
  ptotal=$(grep -E '^(summary|totals):' "$out/cg-pipeline.out" | head -1 | awk '{print $2}')
  pcmds=$((m + setup))
  echo "pipeline (matcher stage + 4 consumer stages): $ptotal instructions / $pcmds commands = $((ptotal / pcmds)) instructions per command"
fi
