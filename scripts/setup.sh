# Shared set-up for scripts/test, scripts/demo and scripts/gpu-check (sourced, not run).
# Installs the Debian packages that are missing, puts CUDA on the PATH where it is installed, and
# configures and builds into $BUILD_DIR (default build/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="${BUILD_DIR:-$ROOT/build}"
JOBS="${JOBS:-$(nproc)}"

ragged_packages=(cmake ninja-build g++ libabsl-dev libgtest-dev libgmock-dev libopenmpi-dev
                 openmpi-bin nlohmann-json3-dev gnuplot-nox iproute2 clang libclang-rt-14-dev)

ragged_install_packages() {
  local missing=()
  for p in "${ragged_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "== installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null
  fi
}

ragged_cuda_path() {
  if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
    export PATH="/usr/local/cuda/bin:$PATH"
  fi
}

# ragged_build [extra cmake args...]
ragged_build() {
  local generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release "$@"
  elif (($#)); then
    cmake -S "$ROOT" -B "$BUILD_DIR" "$@"
  fi
  cmake --build "$BUILD_DIR" -j "$JOBS"
}

# OpenMPI refuses root without these; the tests run as root on CI and on the GPU machine.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
