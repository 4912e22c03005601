#!/usr/bin/env bash
# 1 layer vs 2 layers vs bidirectional at the same starting size (96 transitions), then
# structure learning on each (one target, along the path); amazon:kitchen, glove-6b-50d.
# Usage: SEEDS="0 1 2" OUT=/tmp/deep [DATASET=hatn:kitchen] benchmarks/deep_kitchen.sh   (the library's defaults otherwise)
# Then: python benchmarks/deep_summary.py $OUT > docs/results/deep/kitchen.md
set -u
OUT=${OUT:-/tmp/deep_kitchen}
SEEDS=${SEEDS:-"0 1 2"}
TARGET=${TARGET:-40}
PHASES=${PHASES:-"fixed learn"}
mkdir -p "$OUT"
declare -A MODELS=(
  [1layer]="--patterns 24x4"
  [2layers]="--patterns 12x4 --layers 2"
  [bidir]="--patterns 12x4 --bidirectional"
)
for phase in $PHASES; do
  for seed in $SEEDS; do
    for name in 1layer 2layers bidir; do
      dir="$OUT/$phase-$name-s$seed"
      [ -f "$dir/metrics.json" ] && continue
      extra=""
      [ "$phase" = learn ] && extra="--target-transitions $TARGET"
      start=$(date +%s)
      # shellcheck disable=SC2086
      sparse-rational train --dataset ${DATASET:-amazon:kitchen} --embeddings glove-6b-50d ${MODELS[$name]} \
        --seed "$seed" $extra --threads 1 --quiet --out "$dir" > "$dir.log" 2>&1
      echo "$phase $name seed $seed: exit $? in $(( $(date +%s) - start ))s" | tee -a "$OUT/runs.txt"
    done
  done
done
