#!/bin/bash
# Issue 23 on v4: a 6-concept library (shipped circle, red, striped + green, triangle, star), routed / merged.
set -x
cd /work/main
S=/work/spmbin8/spm; O=out/i23v4; M=models/tiny-shapes

for c in "green yellow" "triangle star" "star square"; do set -- $c
  [ -f $O/$1.safetensors ] || $S train --concept $1 --surrogate $2 --seed 1 --out $O/$1.safetensors
done
# Gates for the three new files from their own labels (same prompt recipe as the shipped gates).
$S gate fit --spm $O/green.safetensors $O/triangle.safetensors $O/star.safetensors \
  --prompts 2200 --seed 11 --synonym-share 0.3 --data $O/gate-labels-new.jsonl --in-place
rm -rf $O/lib && $S library init $O/lib
for f in $M/spm/circle.safetensors $M/spm/red.safetensors $M/spm/striped.safetensors $O/green.safetensors $O/triangle.safetensors $O/star.safetensors; do
  $S library add $O/lib $f
done
$S library verify $O/lib
$S library merge $O/lib --out $O/merged-exact.safetensors --force
$S library merge $O/lib --out $O/merged-svd3.safetensors --rank-budget 3 --force > $O/merged-svd3.txt
FILES="$M/spm/circle.safetensors $M/spm/red.safetensors $M/spm/striped.safetensors $O/green.safetensors $O/triangle.safetensors $O/star.safetensors"
$S eval --spm $FILES --images 100 --json $O/eval6.json --markdown $O/eval6.md --force > $O/eval6.txt 2>&1
