#!/usr/bin/env bash
# Generates a step with decode, saves its inputs and output as .npy, replays the saved step with
# --load and checks that the replay reproduces the saved output (--expect) and the reference.
#   examples_decode_replay.sh DECODE [EXTRA FLAGS...]
set -euo pipefail
decode="$1"
shift
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
"$decode" --batch=3 --capacity=40 --q_heads=4 --kv_heads=2 --head_dim=16 --lengths=offset \
  --sinks=kv_head --lse --iterations=1 --save_inputs="$dir/step" --save="$dir/first" "$@"
for f in query key value sequence_start sequence_end softmax_aux; do
  [ -s "$dir/step/$f.npy" ] || { echo "CHECK: $f.npy was not saved" >&2; exit 1; }
done
out="$("$decode" --load="$dir/step" --lse --verify=all --iterations=1 \
  --expect="$dir/first/output.npy" --expect_lse="$dir/first/lse.npy" "$@")"
echo "$out"
grep -Eq "largest error .*PASS" <<<"$out" || { echo "CHECK: replay not verified" >&2; exit 1; }
grep -Eq "vs --expect .*PASS" <<<"$out" || { echo "CHECK: replay differs" >&2; exit 1; }
