# shellcheck shell=bash
# Build environment shared by scripts/build, scripts/medgemma and scripts/test (sourced, not run).
#
# - Installs the system packages the vendored llama.cpp build needs (cmake, a C++ compiler, libclang) when they
#   are missing and we are root with apt-get; otherwise names them and stops.
# - Builds llama.cpp for this CPU (rustc `-C target-cpu=native` makes llama-cpp-sys-2 turn GGML_NATIVE on, so
#   AVX-512 kernels are compiled where the CPU has them).
# - Some virtual machines advertise AMX but fault (SIGILL) when AMX instructions run. A small probe
#   (scripts/probe/amx_probe.c) executes one AMX tile instruction; if that faults, the C/C++ flags carry
#   -mno-amx-* so the native build leaves AMX out. On real AMX hardware nothing is removed.
# - Set MEDGEMMA_PORTABLE=1 to skip the native build (x86-64-v3: AVX2, FMA, F16C; runs on any x86-64 with AVX2).

MEDGEMMA_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MEDGEMMA_ROOT

medgemma_need_system_packages() {
    local missing=()
    command -v cmake >/dev/null 2>&1 || missing+=(cmake)
    command -v c++ >/dev/null 2>&1 || command -v g++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1 || missing+=(g++)
    if ! ldconfig -p 2>/dev/null | grep -c 'libclang\(-[0-9.]*\)\?\.so' >/dev/null && [ -z "${LIBCLANG_PATH:-}" ]; then
        missing+=(clang libclang-dev)
    fi
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "medgemma: installing build prerequisites: ${missing[*]}" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 || {
            echo "medgemma: apt-get install ${missing[*]} failed; install them and retry" >&2
            return 1
        }
    else
        echo "medgemma: missing build prerequisites: ${missing[*]}" >&2
        echo "  Debian/Ubuntu: sudo apt-get install ${missing[*]}" >&2
        echo "  Fedora: sudo dnf install cmake gcc-c++ clang-devel    macOS: xcode-select --install; brew install cmake" >&2
        return 1
    fi
}

medgemma_native_flags() {
    if [ "$(uname -m)" != x86_64 ]; then
        return 0
    fi
    if [ "${MEDGEMMA_PORTABLE:-0}" = 1 ]; then
        export RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=x86-64-v3"
        return 0
    fi
    export RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=native"
    if grep -qw amx_tile /proc/cpuinfo 2>/dev/null; then
        local probe="$MEDGEMMA_ROOT/target/amx_probe"
        mkdir -p "$MEDGEMMA_ROOT/target"
        if [ ! -x "$probe" ]; then
            cc -O1 -mamx-tile -o "$probe" "$MEDGEMMA_ROOT/scripts/probe/amx_probe.c" 2>/dev/null || true
        fi
        if [ ! -x "$probe" ] || ! "$probe"; then
            local no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
            export CFLAGS="${CFLAGS:-} $no_amx"
            export CXXFLAGS="${CXXFLAGS:-} $no_amx"
        fi
    fi
}

medgemma_need_system_packages || return 1
medgemma_native_flags
export CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
