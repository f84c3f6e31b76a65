#!/bin/bash
# Issue 23 on v4: the three new concepts trained and gated (hardened next by harden.sh; the library is built by run-library.sh).
set -x
cd /work/main
S=/work/spmbin8/spm; O=out/i23v4; M=models/tiny-shapes

for c in "green yellow" "triangle star" "star square"; do set -- $c
  [ -f $O/$1.safetensors ] || $S train --concept $1 --surrogate $2 --seed 1 --out $O/$1.safetensors
done
# Gates for the three new files from their own labels (same prompt recipe as the shipped gates).
$S gate fit --spm $O/green.safetensors $O/triangle.safetensors $O/star.safetensors \
  --prompts 2200 --seed 11 --synonym-share 0.3 --data $O/gate-labels-new.jsonl --in-place
