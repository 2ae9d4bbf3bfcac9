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
