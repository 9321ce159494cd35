#!/bin/bash
# The cpu profile's sample stage (9 sets) under Snakemake --cores 2: sample jobs at 2 threads (one at a
# time) and at 1 thread (two side by side); each run's per-job benchmark files and makespan kept.
set -e
cd /tmp/scratch
export PATH=/work/main/.venv/bin:$PATH MGDM_DATA_DIR=/work/shared/data/medmnist PYTHONPATH=/tmp/scratch/src
for threads in 2 1; do
  rm -rf results/cpu/retinamnist/samples results/cpu/benchmarks/sample
  start=$(date +%s.%N)
  snakemake --cores 2 --config profile=cpu --until sample --set-threads sample=$threads --quiet > log_t$threads.txt 2>&1
  end=$(date +%s.%N)
  echo "threads=$threads makespan_s=$(echo "$end - $start" | bc)" | tee -a makespan.txt
  mkdir -p out_t$threads && cp -r results/cpu/benchmarks/sample out_t$threads/ && cp results/cpu/retinamnist/samples/*.npz out_t$threads/
done
