#!/bin/bash
# Session 21: circle, then green and red, trained in context (erasure pairs) against the rest of the six-concept library.
# Each file gets the gate probe of the file it replaces (the probe reads only the text encoder). Paths: the session's out/s21.
set -ex
cd /work/main
S=spm; O=out/s21; M=models/tiny-shapes; L=docs/figures/v4/library6/spm
$S shapes pairs --concept circle --surrogate square --out $O/circle-pairs.txt --force   # 141 pairs
$S shapes pairs --concept green --surrogate yellow --out $O/green-pairs.txt --force      # 101 pairs
$S shapes pairs --concept red --surrogate blue --out $O/red-pairs.txt --force           # 101 pairs
# circle, fresh, against red, striped, green, triangle, star
$S library init $O/lib5
$S library add $O/lib5 $M/spm/red.safetensors $M/spm/striped.safetensors $L/green.safetensors $L/triangle.safetensors $L/star.safetensors
$S train --concept circle --surrogate square --pairs $O/circle-pairs.txt --seed 1 --iterations 400 --library $O/lib5 --out $O/circle-pairs-grown.safetensors --force
python3 docs/figures/v4/library6/copy-gate.py $L/circle-grown.safetensors $O/circle-pairs-grown.safetensors $L/circle-pairs.safetensors
# green, from the session-17 file, against the new circle and the others
$S library init $O/libG
$S library add $O/libG $L/circle-pairs.safetensors $M/spm/red.safetensors $M/spm/striped.safetensors $L/triangle.safetensors $L/star.safetensors
$S train --concept green --surrogate yellow --pairs $O/green-pairs.txt --seed 1 --init-spm $L/green.safetensors --iterations 400 --library $O/libG --out $O/green-p.safetensors --force
python3 docs/figures/v4/library6/copy-gate.py $L/green.safetensors $O/green-p.safetensors $L/green-pairs.safetensors
# red, from the shipped file, against the new circle and green and the others
$S library init $O/libR
$S library add $O/libR $L/circle-pairs.safetensors $L/green-pairs.safetensors $M/spm/striped.safetensors $L/triangle.safetensors $L/star.safetensors
$S train --concept red --surrogate blue --pairs $O/red-pairs.txt --seed 1 --init-spm $M/spm/red.safetensors --iterations 400 --library $O/libR --out $O/red-p.safetensors --force
python3 docs/figures/v4/library6/copy-gate.py $M/spm/red.safetensors $O/red-p.safetensors $L/red-pairs.safetensors
$S eval --spm $L/circle-pairs.safetensors $L/red-pairs.safetensors $M/spm/striped.safetensors $L/green-pairs.safetensors $L/triangle.safetensors $L/star.safetensors \
  --images 100 --json $O/eval6r.json --markdown $O/eval6r.md --force
# triangle, from the session-17 file, against the library holding the three pair-trained files
$S shapes pairs --concept triangle --surrogate star --out $O/triangle-pairs.txt --force  # 141 pairs
$S library init $O/libT
$S library add $O/libT $L/circle-pairs.safetensors $L/red-pairs.safetensors $M/spm/striped.safetensors $L/green-pairs.safetensors $L/star.safetensors
$S train --concept triangle --surrogate star --pairs $O/triangle-pairs.txt --seed 1 --init-spm $L/triangle.safetensors --iterations 400 --library $O/libT --out $O/triangle-p.safetensors --force
python3 docs/figures/v4/library6/copy-gate.py $L/triangle.safetensors $O/triangle-p.safetensors $L/triangle-pairs.safetensors
$S eval --spm $L/circle-pairs.safetensors $L/red-pairs.safetensors $M/spm/striped.safetensors $L/green-pairs.safetensors $L/triangle-pairs.safetensors $L/star.safetensors \
  --images 100 --json $O/eval6t.json --markdown $O/eval6t.md --force
