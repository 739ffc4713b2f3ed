# shellcheck shell=bash
# The CUDA build environment for `scripts/build --features cuda` (sourced, not run).
#
# With a CUDA toolkit installed (nvcc on PATH, or CUDA_PATH set) it changes nothing but the GPU architectures:
# llama-cpp-sys-2 then links the toolkit's cudart, cuBLAS and cuBLASLt statically, as it always does.
#
# Without one (Debian has no CUDA 13 toolkit), it assembles one from NVIDIA's own PyPI wheels (CUDA 13.0: nvcc,
# NVVM, CRT, the runtime, CCCL and cuBLAS; about 600 MB) into target/cuda-toolkit, or into MEDGEMMA_CUDA_TOOLKIT.
# The wheels carry cuBLAS as shared libraries only, so that build links libcublas.so.13 and libcublasLt.so.13
# dynamically (empty stand-ins take the place of the static archives llama-cpp-sys-2 asks for), and the driver's
# libcuda.so.1 through a link-time stub, as a toolkit's own lib/stubs does. The machine that runs the binary needs
# an NVIDIA driver for CUDA 13 (580 or newer) and libcublas.so.13 (a CUDA 13 toolkit, or
# `pip install nvidia-cublas`, with its lib folder on LD_LIBRARY_PATH).
#
# MEDGEMMA_CUDA_ARCH sets the GPU architectures compiled (CMAKE_CUDA_ARCHITECTURES), e.g. `90-real` for an
# H100/H200 or `89-real` for an RTX 40xx: one architecture compiles in a fraction of the time of ggml's default
# list (seven architectures). Unset: `native` where nvidia-smi sees a GPU, else ggml's default list.

MEDGEMMA_CUDA_WHEELS="nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 nvidia-cublas==13.0.2.14"

medgemma_cuda_toolkit_from_wheels() {
    local tk="$1" python="${PYTHON:-python3}"
    local wheels="$tk.wheels"
    echo "medgemma: no CUDA toolkit here; assembling CUDA 13.0 from NVIDIA's PyPI wheels into $tk" >&2
    rm -rf "$wheels" "$tk.partial"
    mkdir -p "$wheels/unpacked"
    # shellcheck disable=SC2086
    "$python" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform manylinux_2_12_x86_64 --platform manylinux2010_x86_64 \
        -d "$wheels" $MEDGEMMA_CUDA_WHEELS >&2 || {
        echo "medgemma: pip download of the CUDA wheels failed (PyPI unreachable?); install a CUDA toolkit and set CUDA_PATH" >&2
        return 1
    }
    "$python" - "$wheels" <<'EOF' || return 1
import sys, zipfile, pathlib
d = pathlib.Path(sys.argv[1])
for w in sorted(d.glob("*.whl")):
    zipfile.ZipFile(w).extractall(d / "unpacked")
EOF
    # Every wheel puts its part of the toolkit under nvidia/cu13 (bin, nvvm, include, lib).
    mv "$wheels/unpacked/nvidia/cu13" "$tk.partial"
    (
        cd "$tk.partial" || exit 1
        chmod +x bin/* nvvm/bin/* 2>/dev/null
        ln -sfn lib lib64
        cd lib || exit 1
        for l in cudart cublas cublasLt; do ln -sfn "lib$l.so.13" "lib$l.so"; done
        for a in cublas_static cublasLt_static culibos; do rm -f "lib$a.a"; ar rc "lib$a.a"; done
        mkdir -p stubs
        {
            echo "/* Link-time stand-in for the driver's libcuda.so.1 (the functions ggml-cuda calls); never loaded. */"
            for f in cuInit cuDriverGetVersion cuGetErrorString cuDeviceGet cuDeviceGetAttribute \
                cuMemGetAllocationGranularity cuMemCreate cuMemRelease cuMemAddressReserve cuMemAddressFree \
                cuMemMap cuMemUnmap cuMemSetAccess cuGetProcAddress cuGetProcAddress_v2; do
                echo "int $f(void) { return 999; }"
            done
        } > stubs/libcuda.c
        cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o stubs/libcuda.so stubs/libcuda.c
        ln -sfn libcuda.so stubs/libcuda.so.1
    ) || { echo "medgemma: could not lay out the CUDA toolkit in $tk.partial" >&2; return 1; }
    printf 'int main(void) { return 0; }\n' > "$tk.partial/check.cu"
    "$tk.partial/bin/nvcc" -o "$tk.partial/check" "$tk.partial/check.cu" >&2 || {
        echo "medgemma: the assembled nvcc cannot compile (is a C++ compiler installed?)" >&2
        return 1
    }
    rm -f "$tk.partial/check" "$tk.partial/check.cu"
    mv "$tk.partial" "$tk"
    rm -rf "$wheels"
}

medgemma_cuda_env() {
    local tk=""
    if [ -n "${CUDA_PATH:-}" ] && [ -x "$CUDA_PATH/bin/nvcc" ]; then
        tk="$CUDA_PATH"
    elif command -v nvcc >/dev/null 2>&1; then
        tk="$(cd "$(dirname "$(command -v nvcc)")/.." && pwd)"
    fi
    if [ -z "$tk" ]; then
        tk="${MEDGEMMA_CUDA_TOOLKIT:-$MEDGEMMA_ROOT/target/cuda-toolkit}"
        if [ ! -x "$tk/bin/nvcc" ]; then
            medgemma_cuda_toolkit_from_wheels "$tk" || return 1
        fi
        # cuBLAS from the wheels is shared only: link it dynamically (see the header).
        export RUSTFLAGS="${RUSTFLAGS:-} -L native=$tk/lib -L native=$tk/lib/stubs -C link-arg=-lcublas -C link-arg=-lcublasLt"
    fi
    export PATH="$tk/bin:$PATH" CUDA_PATH="$tk" CUDAToolkit_ROOT="$tk" CMAKE_CUDA_COMPILER="$tk/bin/nvcc"
    if [ -n "${MEDGEMMA_CUDA_ARCH:-}" ]; then
        export CMAKE_CUDA_ARCHITECTURES="$MEDGEMMA_CUDA_ARCH"
    elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        export CMAKE_CUDA_ARCHITECTURES=native
    fi
    echo "medgemma: CUDA toolkit $tk ($("$tk/bin/nvcc" --version | tail -1)); architectures: ${CMAKE_CUDA_ARCHITECTURES:-the default list of ggml}" >&2
}
