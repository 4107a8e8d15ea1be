#!/usr/bin/env bash
# Assemble a CUDA 12 toolkit in a conventional CUDA_HOME layout (default /opt/cuda) from
# Debian's packaging of NVIDIA's CUDA 12.4.1 binaries (the "trixie" suite, non-free), on a
# Debian 12 / bookworm machine that can reach deb.debian.org but not nvidia.com.
#
#   scripts/cuda-toolkit.sh [PREFIX]          # then paste the exports it prints at the end
#
# Why this source and not NVIDIA's PyPI wheels: no nvidia-cuda-nvcc-cu12 wheel (12.0 … 12.9)
# ships nvcc, cicc, cudafe++, fatbinary or nvlink (only ptxas and libnvvm), and no cu12 wheel
# ships the static libraries that llama-cpp-sys-2 links on Linux with its `cuda` feature
# (cudart_static, cublas_static, cublasLt_static, culibos). Debian's nvidia-cuda-toolkit /
# nvidia-cuda-dev packages are NVIDIA's own binaries, complete, and support gcc <= 13.
# (bookworm's own nvidia-cuda-toolkit is 11.8, which refuses gcc 12.)
#
# Nothing is installed into the system: the .debs are fetched with a private apt state
# (the machine's sources.list is not touched) and unpacked with dpkg-deb -x.
#
# libcuda (the driver API, -lcuda): the toolkit's own link stub lib64/stubs/libcuda.so
# (SONAME libcuda.so.1, from nvidia-cuda-dev) satisfies the linker, exactly as in NVIDIA's
# devel containers. It is for linking only; at run time the GPU machine's driver provides
# the real libcuda.so.1. Do not put lib64/stubs on LD_LIBRARY_PATH.
#
# Idempotent: re-running with the same package set does nothing but the sanity check.
# Knobs (env): CUDA_DEB_CACHE (downloaded .debs, default /var/cache/lorag-cuda-debs),
#              CUDA_DEB_SUITE (default trixie), CUDA_DEB_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

PREFIX="${1:-/opt/cuda}"
CACHE="${CUDA_DEB_CACHE:-/var/cache/lorag-cuda-debs}"
SUITE="${CUDA_DEB_SUITE:-trixie}"
MIRROR="${CUDA_DEB_MIRROR:-http://deb.debian.org/debian}"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# Pinned package set (CUDA 12.4.1 as packaged by Debian, suite trixie).
PKGS=(
  "nvidia-cuda-toolkit=12.4.131~12.4.1-2"   # nvcc, cicc, ptxas, fatbinary, nvlink, cudafe++, libdevice
  "nvidia-cuda-dev=12.4.127~12.4.1-2"       # headers, static libs, lib*.so dev links, stubs/ (libcuda.so …)
  "libcudart12=12.4.127~12.4.1-2"
  "libcublas12=12.4.5.8~12.4.1-2"
  "libcublaslt12=12.4.5.8~12.4.1-2"
  "libcurand10=11.1.1+~10.3.5.147~12.4.1-2"
  "libnvrtc12=12.4.127~12.4.1-2"
  "libnvrtc-builtins12.4=12.4.127~12.4.1-2"
  "libnvvm4=12.4.131~12.4.1-2"
  "libnvjitlink12=12.4.127~12.4.1-2"
  "libnvtoolsext1=12.4.127~12.4.1-2"
  "libcu++-dev=2.3.2-2"                     # CCCL headers (cuda/, cub/, thrust/) shipped with 12.4
  "libcub-dev=2.3.2-2"
  "libthrust-dev=2.3.2-2"
)

log() { printf '\n==> %s\n' "$*"; }

STAMP_WANT="$(printf '%s\n' "$SUITE" "${PKGS[@]}" | sha256sum | cut -d' ' -f1)"
STAMP="$PREFIX/.lorag-cuda-toolkit.stamp"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_WANT" && -x "$PREFIX/bin/nvcc" ]]; then
  log "$PREFIX already holds this package set (stamp $STAMP); skipping download/assembly"
else
  for tool in apt-get dpkg-deb sha256sum; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
  done
  [[ -f "$KEYRING" ]] || { echo "missing $KEYRING (apt-get install debian-archive-keyring)" >&2; exit 1; }

  # --- 1. private apt state pointing at $SUITE non-free -----------------------------------
  APTROOT="$CACHE/apt"
  log "private apt state in $APTROOT ($MIRROR $SUITE main contrib non-free)"
  mkdir -p "$APTROOT/etc/apt/sources.list.d" "$APTROOT/etc/apt/preferences.d" \
           "$APTROOT/etc/apt/apt.conf.d" "$APTROOT/state/lists/partial" \
           "$APTROOT/cache/archives/partial" "$CACHE/debs"
  touch "$APTROOT/state/status"
  echo "deb [signed-by=$KEYRING] $MIRROR $SUITE main contrib non-free" > "$APTROOT/etc/apt/sources.list"
  APT_OPTS=(-o "Dir::Etc=$APTROOT/etc/apt" -o "Dir::State=$APTROOT/state"
            -o "Dir::Cache=$APTROOT/cache" -o "Dir::State::status=$APTROOT/state/status"
            -o "APT::Sandbox::User=root")
  apt-get "${APT_OPTS[@]}" -q update

  # --- 2. download the pinned .debs (skips ones already there) ----------------------------
  log "downloading ${#PKGS[@]} packages into $CACHE/debs"
  need=()
  for p in "${PKGS[@]}"; do
    name="${p%%=*}"; ver="${p#*=}"
    # .deb file names encode ':' and keep '~' and '+' as is
    if ! compgen -G "$CACHE/debs/${name}_${ver//:/%3a}_*.deb" >/dev/null; then need+=("$p"); fi
  done
  if ((${#need[@]})); then
    (cd "$CACHE/debs" && apt-get "${APT_OPTS[@]}" -q download "${need[@]}")
  fi
  ls -la "$CACHE/debs"

  # --- 3. unpack into a staging root, then lay out $PREFIX ---------------------------------
  STAGE="$(mktemp -d "${PREFIX%/}.stage.XXXXXX")"
  trap 'rm -rf "$STAGE"' EXIT
  ROOT="$STAGE/root"; OUT="$STAGE/out"
  mkdir -p "$ROOT" "$OUT"/{bin,include,lib64,nvvm/bin,nvvm/lib64,nvvm/libdevice,nvvm/include}
  for p in "${PKGS[@]}"; do
    name="${p%%=*}"; ver="${p#*=}"
    deb="$(compgen -G "$CACHE/debs/${name}_${ver//:/%3a}_*.deb" | head -1)"
    log "unpacking $(basename "$deb")"
    nice -n 19 dpkg-deb -x "$deb" "$ROOT"
  done

  log "assembling layout"
  TK="$ROOT/usr/lib/nvidia-cuda-toolkit"
  MA="$ROOT/usr/lib/x86_64-linux-gnu"
  # bin/: the real nvcc ELF (Debian's /usr/bin/nvcc is a wrapper script) + the other drivers
  mv "$TK/bin/nvcc" "$OUT/bin/nvcc"
  mv "$TK/bin/crt" "$OUT/bin/crt"
  for b in ptxas fatbinary nvlink cudafe++ bin2c cu++filt cuobjdump nvdisasm nvprune __nvcc_device_query; do
    mv "$ROOT/usr/bin/$b" "$OUT/bin/$b"
  done
  # nvvm/: cicc is looked up on nvcc.profile's PATH (nvvm/bin), libdevice via NVVMIR_LIBRARY_DIR
  mv "$TK/bin/cicc" "$OUT/nvvm/bin/cicc"
  mv "$TK/libdevice/libdevice.10.bc" "$OUT/nvvm/libdevice/"
  cp -a "$ROOT/usr/include/nvvm.h" "$OUT/nvvm/include/"
  # include/: every header the packages ship (cuda_runtime.h, cublas*, curand*, nvrtc.h, cuda/, cub/, thrust/, crt/ …)
  cp -a "$ROOT/usr/include/." "$OUT/include/"
  # lib64/: shared + static libs, dev symlinks, stubs/ (link-only stubs incl. libcuda.so)
  cp -a "$MA/." "$OUT/lib64/"
  rm -rf "$OUT/lib64/pkgconfig"
  # nvidia-cuda-dev ships dev links for libraries we did not fetch (cufft, npp, …): drop the dangling ones
  find "$OUT/lib64" -maxdepth 1 -xtype l -print -delete | sed 's/^/   removed dangling link: /'
  for f in "$OUT"/lib64/libnvvm.so*; do ln -s "../../lib64/$(basename "$f")" "$OUT/nvvm/lib64/"; done
  # the layout nvcc expects around itself (same variables as NVIDIA's own bin/nvcc.profile)
  cat > "$OUT/bin/nvcc.profile" <<'EOF'

TOP              = $(_HERE_)/..

NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice

LD_LIBRARY_PATH += $(TOP)/lib64:
PATH            += $(TOP)/nvvm/bin:$(_HERE_):

INCLUDES        +=  "-I$(TOP)/include" $(_SPACE_)

LIBRARIES        =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"

CUDAFE_FLAGS    +=
PTXAS_FLAGS     +=
EOF
  printf '%s\n' "${PKGS[@]}" > "$OUT/DEBIAN-PACKAGES.txt"
  echo "$STAMP_WANT" > "$OUT/.lorag-cuda-toolkit.stamp"

  log "installing into $PREFIX"
  if [[ -e "$PREFIX" ]]; then rm -rf "${PREFIX%/}.old"; mv "$PREFIX" "${PREFIX%/}.old"; fi
  mv "$OUT" "$PREFIX"
  rm -rf "${PREFIX%/}.old" "$STAGE"
  trap - EXIT
fi

# --- 4. sanity check: nvcc runs, and a tiny .cu compiles and links (driver API + runtime + cuBLAS)
log "$PREFIX/bin/nvcc --version"
"$PREFIX/bin/nvcc" --version

log "compile + link a tiny .cu for sm_90 (not run: no GPU needed)"
T="$(mktemp -d)"
cat > "$T/hello.cu" <<'EOF'
#include <cstdio>
#include <cuda.h>
#include <cuda_runtime.h>
#include <cublas_v2.h>
__global__ void axpy(float a, const float *x, float *y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] += a * x[i];
}
int main() {
  int drv = 0; cuDriverGetVersion(&drv);                 // driver API  -> libcuda
  cublasHandle_t h; cublasStatus_t s = cublasCreate(&h); // cuBLAS      -> libcublas
  float *x = nullptr, *y = nullptr;
  cudaMalloc(&x, 4 * sizeof(float)); cudaMalloc(&y, 4 * sizeof(float));
  axpy<<<1, 4>>>(2.0f, x, y, 4);                         // runtime     -> libcudart
  printf("driver %d, cublas %d, %s\n", drv, (int)s, cudaGetErrorString(cudaDeviceSynchronize()));
  return 0;
}
EOF
nice -n 19 "$PREFIX/bin/nvcc" -arch=sm_90 -o "$T/hello" "$T/hello.cu" -lcuda -lcublas
echo "   linked $T/hello; NEEDED:"
readelf -d "$T/hello" | awk '/NEEDED/ {print "     " $NF}'
rm -rf "$T"

log "done. Environment for building against $PREFIX:"
cat <<EOF
export CUDA_HOME=$PREFIX
export CUDA_PATH=$PREFIX
export PATH=$PREFIX/bin:\$PATH
export LIBRARY_PATH=$PREFIX/lib64:$PREFIX/lib64/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}
export LD_LIBRARY_PATH=$PREFIX/lib64\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export CUDAARCHS=90                  # CMake's default CUDA arch list (90 = H100)
export CMAKE_CUDA_ARCHITECTURES=90   # llama-cpp-sys-2 forwards CMAKE_* env vars; ggml-cuda ignores CUDAARCHS when GGML_NATIVE is on
export CUDA_COMPUTE_CAP=90           # candle-kernels / cudaforge (no GPU to query with nvidia-smi)
EOF
