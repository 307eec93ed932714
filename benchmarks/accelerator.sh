#!/usr/bin/env bash
# The accelerator benchmark (benchmarks/accelerator.py) on a machine with a GPU, JAX and no
# TensorFlow or Keras: the smoke sizes first (every part runs), then the full sizes, in one
# command of at most 6 minutes (so that a fix and a second run fit in 15 minutes of GPU time).
#
#     bash benchmarks/accelerator.sh            # smoke (≤ 75 s), then full sizes (≤ 280 s)
#     bash benchmarks/accelerator.sh --smoke    # tiny sizes only, any machine, about a minute
#
# What to carry: the machine lacks Keras and two of its needs, which travel as wheels in
# .whl/ at the repository root (an ignored folder: `echo /.whl/ >> .git/info/exclude`),
# filled on a machine with the network by
#
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#         --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
#         keras==3.15.1 namex==0.1.0 optree==0.20.0
#
# and nothing else (a carried numpy or ml_dtypes would shadow the image's and break its JAX);
# then, with the device tool: run `bash benchmarks/accelerator.sh 2>&1 | tee $OUT/gpu.log`,
# carry [".whl"], timeout_s 420. Without .whl/ the installed packages are used.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
if [ -d .whl ] && compgen -G ".whl/*.whl" > /dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1
if [ "${1:-}" = "--smoke" ]; then
  exec "$python" benchmarks/accelerator.py --smoke
fi
echo "## smoke sizes ($(date -u '+%Y-%m-%d %H:%M UTC'))"
timeout 75 "$python" benchmarks/accelerator.py --smoke --budget 50 || echo "(smoke run: exit $?)"
echo
echo "## full sizes ($(date -u '+%Y-%m-%d %H:%M UTC'))"
timeout 280 "$python" benchmarks/accelerator.py --budget 200 || echo "(full run: exit $?)"
