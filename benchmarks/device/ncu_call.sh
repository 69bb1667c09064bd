#!/usr/bin/env bash
# Nsight Compute over one decode step (benchmarks/device/ncu_decode.py), after ab_call.sh with
# KEEP=1 built strata into /tmp/site and left the files in /tmp:
#   bash benchmarks/device/ncu_call.sh 8b-Q4_0:0 8b-Q4_0:2048 1b-F16:0
# FILE:DEPTH each; the CSV and the summary of each go to $OUT/ncu-FILE-dDEPTH.{csv,md}.
set -u
export PATH=$PATH:/usr/local/cuda/bin PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
for spec in "$@"; do
    name=${spec%%:*}; depth=${spec#*:}; o=$OUT/ncu-$name-d$depth
    timeout 240 "$NCU" --profile-from-start off --clock-control none --csv --page raw \
        --metrics gpu__time_duration.sum,dram__bytes_read.sum,launch__grid_size,launch__registers_per_thread \
        --log-file $o.csv python3 benchmarks/device/ncu_decode.py run /tmp/$name.gguf --depth $depth
    echo "ncu $spec rc=$?"
    python3 benchmarks/device/ncu_decode.py summary $o.csv > $o.md 2>&1; head -16 $o.md
done
