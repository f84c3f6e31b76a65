#!/bin/bash
# The library with the hardened green / triangle / star.
set -x
cd /work/main
S=/work/spmbin8/spm; O=out/i23v4; M=models/tiny-shapes
rm -rf $O/lib && $S library init $O/lib
for f in $M/spm/circle.safetensors $M/spm/red.safetensors $M/spm/striped.safetensors $O/hard/green.safetensors $O/hard/triangle.safetensors $O/hard/star.safetensors; do
  $S library add $O/lib $f
done
$S library verify $O/lib
$S library merge $O/lib --out $O/merged-exact.safetensors --force
$S library merge $O/lib --out $O/merged-svd3.safetensors --rank-budget 3 --force > $O/merged-svd3.txt
FILES="$M/spm/circle.safetensors $M/spm/red.safetensors $M/spm/striped.safetensors $O/hard/green.safetensors $O/hard/triangle.safetensors $O/hard/star.safetensors"
$S eval --spm $FILES --images 100 --json $O/eval6h.json --markdown $O/eval6h.md --force > $O/eval6h.txt 2>&1
