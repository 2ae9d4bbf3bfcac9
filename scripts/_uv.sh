# Sourced by the scripts: finds uv, or installs it for this user with pip, and sets $UV.
if command -v uv >/dev/null 2>&1; then
  UV="uv"
elif python3 -m uv --version >/dev/null 2>&1; then
  UV="python3 -m uv"
else
  echo "Installing uv (Python package manager) for this user..." >&2
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv
  UV="python3 -m uv"
fi
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

# The optional llama.cpp part (GGUF models on llama.cpp, K-quant exports, exports checked in llama.cpp itself) is
# llama-cpp-python, which compiles from source (about 4 minutes once; uv caches the build). It is added where a C++
# compiler is found. ORCHARD_LLAMA=0 leaves it out; ORCHARD_LLAMA=1 makes a missing compiler an error (CI).
EXTRAS=""
if [ "${ORCHARD_LLAMA:-auto}" != "0" ]; then
  if command -v c++ >/dev/null 2>&1 || command -v clang++ >/dev/null 2>&1; then
    EXTRAS="--extra llama"
    # A portable build (not tuned to this exact CPU), so the wheel uv caches runs wherever the cache goes.
    export CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}"
  elif [ "${ORCHARD_LLAMA:-auto}" = "1" ]; then
    echo "ORCHARD_LLAMA=1 but no C++ compiler was found (install build-essential, or Xcode's command line tools)." >&2
    exit 1
  else
    echo "note: no C++ compiler found, so llama.cpp is left out: GGUF models load through transformers and" \
      "K-quant exports are unavailable. Install a compiler (build-essential; Xcode's command line tools on a" \
      "Mac) and run this again to add it." >&2
  fi
fi
