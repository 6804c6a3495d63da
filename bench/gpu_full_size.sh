#!/usr/bin/env bash
# The README's GPU row: the `gpu` preset from scratch (no ImageNet weights: the machine has no internet) on the full
# data set, then melanoma-evaluate (--dedup, and --tta) on its test split. Usage: bench/gpu_full_size.sh DATA_ROOT OUT
# DATA_ROOT: melanoma_cancer_dataset/{train,test}/{benign,malignant}. What it took to the GPU machine here is in the
# README (a 224-px WebP copy: the whole data set as JPEG was over the transfer limit).
set -euo pipefail
data=${1:?usage: gpu_full_size.sh DATA_ROOT OUT}; out=${2:?usage: gpu_full_size.sh DATA_ROOT OUT}
mkdir -p "$out"
export OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1
py() { python3 -c "import sys; from melanoma_nb.cli import $1 as m; sys.argv[0] = '$2'; sys.exit(m())" "${@:3}"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__)" | tee -a "$out/gpu.txt"
t0=$(date +%s.%N)
py train_main melanoma-train --preset gpu --no-pretrained --freeze-epochs 0 --data "$data" --out "$out/run" --no-progress \
  2>&1 | tee "$out/train.log"
t1=$(date +%s.%N)
py evaluate_main melanoma-evaluate --model "$out/run/model.pt" --data "$data" --dedup --out "$out/eval" --no-progress \
  2>&1 | tee "$out/eval.log"
py evaluate_main melanoma-evaluate --model "$out/run/model.pt" --data "$data" --dedup --tta --out "$out/eval_tta" \
  --no-progress 2>&1 | tee "$out/eval_tta.log"
t2=$(date +%s.%N)
python3 -c "print(f'wall: train {$t1 - $t0:.1f} s (cache and copy audit included), evaluate x2 {$t2 - $t1:.1f} s')" | tee -a "$out/gpu.txt"
