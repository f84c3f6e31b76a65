#!/usr/bin/python3
"""Compares latents written by `spm generate --save-latents F` with the PyTorch reference's final latents.

  /usr/bin/python3 scripts/reference/sdxl/compare_latents.py F.safetensors euler [tests/fixtures/tiny-sdxl-torch]

Prints max |spm - torch| / max |torch| and exits 1 above 1e-3 (issue 21's bound).
"""
import json
import struct
import sys

import numpy as np


def read(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], "<f4").reshape(v["shape"])
            for k, v in header.items() if k != "__metadata__"}


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    fixture = sys.argv[3] if len(sys.argv) == 4 else "tests/fixtures/tiny-sdxl-torch"
    ours = read(sys.argv[1])["latents"].astype(np.float64)
    ref = read(f"{fixture}/loop/latents.safetensors")["final." + sys.argv[2]].astype(np.float64)
    if ours.shape != ref.shape:
        sys.exit(f"shapes differ: {sys.argv[1]} {ours.shape} vs reference {ref.shape}")
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    print(f"{sys.argv[2]}: max relative error {rel:.2e}")
    sys.exit(0 if rel < 1e-3 else 1)


if __name__ == "__main__":
    main()
