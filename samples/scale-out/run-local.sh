#!/bin/bash
# The same run on one machine as N local shard processes (what the scale-out test does), then the gather step.
# Usage: samples/scale-out/run-local.sh [N] [OUT]    (from the repository root; the built-in model by default)
set -euo pipefail
N=${1:-3}
OUT=${2:-out/scale-out}
SPM=${SPM:-"dotnet run --project src/Spm.Cli -c Release --no-build --"}
MANIFEST=$(dirname "$0")/concepts.yaml
mkdir -p "$OUT/trained"
pids=()
for ((i = 0; i < N; i++)); do
  $SPM train --manifest "$MANIFEST" --shard "$i/$N" --out-dir "$OUT/trained" --threads 1 > "$OUT/shard-$i.log" 2>&1 &
  pids+=($!)
done
failed=0
for i in "${!pids[@]}"; do wait "${pids[$i]}" || { echo "shard $i/$N failed: see $OUT/shard-$i.log (rerun it to retry)"; failed=1; }; done
[ $failed -eq 0 ] || exit 1
rm -rf "$OUT/lib"
$SPM library init "$OUT/lib"
$SPM library add "$OUT/lib" "$OUT"/trained/*.safetensors
$SPM library list "$OUT/lib"
