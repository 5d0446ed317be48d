#!/usr/bin/env bash
# A small scaling sweep (1 and 2 ranks, every mesh of dp, tp, sp, strong and weak): checks the
# CSV has one row per run (4 strong + 4 weak), every run verified, and the PNG was drawn.
#   examples_scaling.sh SCALING
set -euo pipefail
scaling="$1"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$scaling" --ranks=1,2 --axes=dp,tp,sp --mode=both --batch=2 --capacity=64 --q_heads=4 \
  --kv_heads=2 --head_dim=32 --iterations=2 --out="$dir" \
  --mpirun_args="--oversubscribe --allow-run-as-root --mca btl self,tcp --mca btl_tcp_if_include lo"
csv="$dir/scaling.csv"
head -1 "$csv" | grep -q '^mode,ranks,mesh,dp,sp,tp,' || { echo "CHECK: bad CSV header" >&2; exit 1; }
rows=$(($(wc -l <"$csv") - 1))
[ "$rows" -eq 8 ] || { echo "CHECK: expected 8 rows, got $rows" >&2; cat "$csv"; exit 1; }
[ "$(grep -c '^strong,' "$csv")" -eq 4 ] && [ "$(grep -c '^weak,' "$csv")" -eq 4 ] ||
  { echo "CHECK: expected 4 strong and 4 weak rows" >&2; exit 1; }
[ "$(grep -c ',pass$' "$csv")" -eq 8 ] || { echo "CHECK: a run did not verify" >&2; exit 1; }
grep -q '^strong,1,dp=1 sp=1 tp=1,.*,1.0000,1.0000,' "$csv" ||
  { echo "CHECK: the 1-rank baseline is not speedup 1" >&2; exit 1; }
[ "$(head -c 8 "$dir/scaling.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] ||
  { echo "CHECK: scaling.png is not a PNG" >&2; exit 1; }
echo "scaling: OK ($rows rows, $(stat -c %s "$dir/scaling.png") byte PNG)"
