#!/bin/bash
# issue 30 on a quiet machine: predict --workers 1/2 and serve (the server before issue 30,
# h11+asyncio, the default), client and server pinned to 2 cores (taskset; PIN_CPUS).
# Run from the repository root as `bash .dev/run.sh` with an ignored .dev/ folder holding:
#   .dev/wheels/  wheels of the runtime and serve dependencies for the machine's Python
#                 (pip download --only-binary=:all: --python-version 3.12 ...)
#   .dev/data/    amazon-hatn/kitchen and amazon-multi-domain/sorted_data_acl/kitchen_&_housewares
#   .dev/m20/     the README main job's model folder (2x2,18x1, mean readout, tuned rows)
#   .dev/old/     `git archive 14dd258 sparse_rational | tar -x -C .dev/old` (serve before 4113947)
# Results go to $OUT (docs/results/quiet-h200-cpu/README.md).
set -u
cd "$(dirname "$0")/.."
R=$PWD
export SPARSE_RATIONAL_DATA=$R/.dev/data PYTHONDONTWRITEBYTECODE=1
python3 -V; nproc; which cc gcc; uptime
python3 -m pip install -q --no-index --find-links .dev/wheels safetensors tqdm jinja2 ninja starlette uvicorn httptools uvloop orjson 2>&1 | tail -3
python3 -c "import torch, numpy, starlette, uvicorn, httptools, uvloop, orjson; print(torch.__version__, numpy.__version__, starlette.__version__, uvicorn.__version__)"
PIN="taskset -c ${PIN_CPUS:-2,3}"
export PYTHONPATH=$R
# warm the native build
python3 -c "from sparse_rational import native; print('native', native.available(), native.build_error())" 2>&1 | tail -1
PYTHONPATH=$R/.dev/old python3 -c "from sparse_rational import native; print('old native', native.available())" 2>&1 | tail -1
echo "== predict --workers (24k)"
timeout 150 $PIN python3 benchmarks/predict_e2e.py --models .dev/m20 --workers 2 --workers-only --no-torch-path --repeat 7 --json $OUT/predict_workers_quiet.json 2>&1 | tail -8
echo "== serve"
for round in 1 2; do
  for mode in old plain fast; do
    sa=""; pp=$R
    [ $mode = plain ] && sa="--http h11 --loop asyncio"
    [ $mode = old ] && pp=$R/.dev/old
    PYTHONPATH=$pp timeout 60 $PIN python3 benchmarks/web_load.py --model .dev/m20 --requests 5000 --concurrency 8 --rounds 1 --startup-runs 0 --server-args "$sa" --json $OUT/wl_${mode}_$round.json > $OUT/wl_${mode}_$round.log 2>&1
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); l=d['rounds'][0][0]; print(sys.argv[2], sys.argv[3], l['requests_per_s'], 'req/s p50', l['p50_ms'], 'p99', l['p99_ms'], 'errors', l['errors'], 'texts/call', l['texts_per_model_call'])" $OUT/wl_${mode}_$round.json $mode $round 2>&1 | tail -1
  done
done
echo "== predict --workers (240k)"
python3 -c "
from pathlib import Path
import sys; sys.path.insert(0,'benchmarks')
from predict_e2e import default_docs
p = default_docs(Path('/tmp')); Path('/tmp/docs240k.txt').write_text(p.read_text(encoding='utf-8')*10, encoding='utf-8'); print(p)"
timeout 150 $PIN python3 benchmarks/predict_e2e.py --models .dev/m20 --docs /tmp/docs240k.txt --workers 2 --workers-only --no-torch-path --repeat 3 --json $OUT/predict_workers_240k_quiet.json 2>&1 | tail -6
uptime
