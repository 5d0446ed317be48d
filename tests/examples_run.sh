#!/usr/bin/env bash
# Runs an example and checks its exit status and output (ctest's PASS_REGULAR_EXPRESSION ignores
# the exit status, so the examples' tests go through this script).
#
#   examples_run.sh ok|fail|fail1 [PATTERN | !PATTERN]... -- COMMAND [ARGS...]
#
# ok: the command must exit 0. fail: non-zero. fail1: non-zero with exactly one line on stderr.
# PATTERN (extended regex) must appear in stdout+stderr; !PATTERN must not.
set -uo pipefail
expect="$1"
shift
patterns=()
while (($#)) && [ "$1" != "--" ]; do
  patterns+=("$1")
  shift
done
[ "${1:-}" = "--" ] || { echo "examples_run.sh: missing -- before the command" >&2; exit 2; }
shift

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$@" >"$tmp/out" 2>"$tmp/err"
rc=$?
cat "$tmp/out"
cat "$tmp/err" >&2
cat "$tmp/out" "$tmp/err" >"$tmp/all"

status=0
case "$expect" in
  ok) [ "$rc" -eq 0 ] || { echo "CHECK: expected exit 0, got $rc" >&2; status=1; } ;;
  fail | fail1)
    [ "$rc" -ne 0 ] || { echo "CHECK: expected a non-zero exit, got 0" >&2; status=1; }
    if [ "$expect" = fail1 ]; then
      lines=$(wc -l <"$tmp/err")
      [ "$lines" -eq 1 ] || { echo "CHECK: expected one line on stderr, got $lines" >&2; status=1; }
    fi
    ;;
  *) echo "examples_run.sh: unknown expectation $expect" >&2; exit 2 ;;
esac
for p in "${patterns[@]}"; do
  if [ "${p:0:1}" = "!" ]; then
    if grep -Eq -- "${p:1}" "$tmp/all"; then
      echo "CHECK: output matches /${p:1}/ but must not" >&2
      status=1
    fi
  elif ! grep -Eq -- "$p" "$tmp/all"; then
    echo "CHECK: output does not match /$p/" >&2
    status=1
  fi
done
exit $status
