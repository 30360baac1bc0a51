#!/usr/bin/env bash
# Fuzzes the line framer and the event parser with libFuzzer (the long form of the
# reliability checks; see RELIABILITY.md). Not part of `swift test`: it needs a build with
# -sanitize=fuzzer. Usage: scripts/fuzz.sh [SECONDS] (default 300).
set -euo pipefail
cd "$(dirname "$0")/../Fuzz"
seconds=${1:-300}
swift build -c debug -Xswiftc -sanitize=fuzzer,address --scratch-path .build-fuzz
work=$(mktemp -d /tmp/trackq-fuzz.XXXXXX)
cp corpus/* "$work/"
# -close_fd_mask=1: keep libFuzzer's report readable. The corpus grows in $work; the
# committed seeds stay as they are.
.build-fuzz/debug/EventFuzz "$work" -max_total_time="$seconds" -print_final_stats=1 -max_len=65536 2>&1 \
  | tee "$work/fuzz.log" | grep -E '^(#[0-9]+ +(INITED|DONE|pulse)|stat::|==[0-9]+==|SUMMARY|Done)' || true
grep -q 'stat::number_of_executed_units' "$work/fuzz.log"
if grep -qE 'ERROR: (libFuzzer|AddressSanitizer)|deadly signal' "$work/fuzz.log"; then
  echo "fuzz: a crash; see $work/fuzz.log and the crash-* file it names" >&2
  exit 1
fi
echo "fuzz: no crash in ${seconds}s; corpus and log in $work"
