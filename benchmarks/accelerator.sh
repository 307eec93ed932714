#!/usr/bin/env bash
# The accelerator benchmark (benchmarks/accelerator.py) on a machine with a GPU, JAX and no
# TensorFlow or Keras. What that machine lacks travels as wheels in .whl/ at the repository
# root (an ignored folder; BENCHMARKS.md says how to fill it); they are installed into
# /tmp/site. Without .whl/ the installed packages are used (as the tests do with --smoke).
#
#     bash benchmarks/accelerator.sh            # the full sizes, within 4 minutes
#     bash benchmarks/accelerator.sh --smoke    # tiny sizes, any machine, under a minute
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
export TF_CPP_MIN_LOG_LEVEL=3
exec "$python" benchmarks/accelerator.py "$@"
