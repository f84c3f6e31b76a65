#!/bin/bash
set -x
cd /work/main
S=/work/spmbin8/spm; O=out/i23v4; M=models/tiny-shapes
rm -rf $O/lib5 && $S library init $O/lib5
for f in $M/spm/red.safetensors $M/spm/striped.safetensors $O/hard/green.safetensors $O/hard/triangle.safetensors $O/hard/star.safetensors; do $S library add $O/lib5 $f; done
$S train --concept circle --surrogate square --seed 1 --init-spm $M/spm/circle.safetensors --iterations 100 --library $O/lib5 --out $O/grown/circle.safetensors --force
$S gate fit --spm $O/grown/circle.safetensors --data $M/gate-labels.jsonl --in-place --strength 1.5
rm -rf $O/libg && cp -r $O/lib5 $O/libg && $S library add $O/libg $O/grown/circle.safetensors
FILES="$O/grown/circle.safetensors $M/spm/red.safetensors $M/spm/striped.safetensors $O/hard/green.safetensors $O/hard/triangle.safetensors $O/hard/star.safetensors"
$S eval --spm $FILES --images 100 --json $O/eval6g.json --markdown $O/eval6g.md --force > $O/eval6g.txt 2>&1
