#!/usr/bin/env bash
# The main job across two "hosts" (network namespaces made by scripts/multinode-netns): checks
# that the ranks ran on two distinct hosts, that the result verified, and that MPI traffic
# crossed each host's own link. Exit 77 (ctest: skipped, with the reason) where namespaces cannot
# be made (not root, no ip, no permission).
#   examples_multinode.sh SCRIPTS_DIR DECODE
set -uo pipefail
scripts="$1"
decode="$2"
"$scripts/multinode-netns" check || exit $?
out="$("$scripts/multinode-netns" run --hosts 2 --slots 2 -- "$decode" --mesh=sp=2,tp=2 \
  --out_spec=gathered --batch=4 --capacity=256 --q_heads=8 --kv_heads=2 --head_dim=64 \
  --lengths=offset --sinks=q_head --lse --verify=all --iterations=3 2>&1)"
rc=$?
echo "$out"
[ $rc -eq 0 ] || { echo "CHECK: the job failed (exit $rc)" >&2; exit 1; }
grep -Eq "largest error .*PASS" <<<"$out" || { echo "CHECK: not verified" >&2; exit 1; }
grep -Eq "^hosts +rg[0-9]+-h0 \(ranks 0-1\), rg[0-9]+-h1 \(ranks 2-3\)" <<<"$out" ||
  { echo "CHECK: the ranks did not run on two distinct hosts" >&2; exit 1; }
# Every host sent real traffic (more than the launch chatter) over its own link.
while read -r bytes; do
  ((bytes > 20000)) || { echo "CHECK: a host sent only $bytes bytes over eth0" >&2; exit 1; }
done < <(sed -n 's/^== host .* sent \([0-9]*\) bytes over eth0$/\1/p' <<<"$out")
[ "$(grep -c '^== host .* sent' <<<"$out")" -eq 2 ] || { echo "CHECK: no traffic report" >&2; exit 1; }
echo "multinode: OK"
