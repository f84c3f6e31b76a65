#!/bin/bash
cd /work/main
S=/work/spmbin8/spm; O=out/i23v4; mkdir -p $O/hard
while [ ! -s $O/star.safetensors ] || ! grep -q "star.safetensors: leak" $O/run.log; do sleep 10; done
sleep 5
$S train --concept green --surrogate yellow --seed 1 --init-spm $O/green.safetensors --iterations 0 --robust-rounds 4 --robust-goals 24 \
  --robust-prompt "a green circle on a white background" --robust-prompt "a green square on a black background" \
  --robust-prompt "a striped green triangle on a gray background" --robust-prompt "a dotted green star on a white background" \
  --robust-prompt "a green square on a light blue background" --robust-prompt "a green triangle" --out $O/hard/green.safetensors --force
$S train --concept triangle --surrogate star --seed 1 --init-spm $O/triangle.safetensors --iterations 0 --robust-rounds 4 --robust-goals 24 \
  --robust-prompt "a red triangle on a white background" --robust-prompt "an orange triangle on a black background" \
  --robust-prompt "a blue striped triangle on a gray background" --robust-prompt "a green dotted triangle on a white background" \
  --robust-prompt "a purple triangle on a light blue background" --robust-prompt "a triangle" --out $O/hard/triangle.safetensors --force
$S train --concept star --surrogate square --seed 1 --init-spm $O/star.safetensors --iterations 0 --robust-rounds 4 --robust-goals 24 \
  --robust-prompt "a red star on a white background" --robust-prompt "an orange star on a black background" \
  --robust-prompt "a blue striped star on a gray background" --robust-prompt "a green dotted star on a white background" \
  --robust-prompt "a purple star on a light blue background" --robust-prompt "a star" --out $O/hard/star.safetensors --force
$S gate fit --spm $O/hard/green.safetensors $O/hard/triangle.safetensors $O/hard/star.safetensors --data $O/gate-labels-new.jsonl --in-place
