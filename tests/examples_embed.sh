#!/usr/bin/env bash
# Installs this build of ragged into a temporary prefix, builds examples/embed against it as a
# separate CMake project (find_package(ragged)), and runs it under mpirun with 2 ranks: the
# README's embedding sample, compiled and checked. Exits 77 (skipped) with the reason when the
# installed package is incomplete.
#   examples_embed.sh BUILD_DIR SOURCE_DIR MPIEXEC
set -uo pipefail
build="$1"
src="$2"
mpiexec="$3"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; echo "CHECK: cmake --install failed" >&2; exit 1; }
# Every header the installed headers include must be installed too.
missing=$(cd "$tmp/prefix/include/ragged" &&
  grep -rhoE '#include "(runtime|kernels|sharding)/[^"]+"' . | sed 's/#include "//; s/"$//' |
  sort -u | while read -r h; do [ -f "$h" ] || echo "$h"; done)
if [ -n "$missing" ]; then
  echo "skipped: the installed package lacks headers that its headers include:" $missing \
    "(the install rule in CMakeLists.txt excludes them)" >&2
  exit 77
fi
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S "$src/examples/embed" -B "$tmp/embed" "${generator[@]}" \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/configure.log" 2>&1 ||
  { cat "$tmp/configure.log"; echo "CHECK: find_package(ragged) failed" >&2; exit 1; }
cmake --build "$tmp/embed" >"$tmp/build.log" 2>&1 ||
  { cat "$tmp/build.log"; echo "CHECK: the embed sample did not build" >&2; exit 1; }
out="$("$mpiexec" -np 2 --oversubscribe --allow-run-as-root --mca btl self,tcp \
  --mca btl_tcp_if_include lo "$tmp/embed/embed" 2>&1)"
rc=$?
echo "$out"
[ $rc -eq 0 ] || { echo "CHECK: embed failed (exit $rc)" >&2; exit 1; }
[ "$(grep -c 'largest error .* PASS' <<<"$out")" -eq 2 ] ||
  { echo "CHECK: expected PASS on both ranks" >&2; exit 1; }
