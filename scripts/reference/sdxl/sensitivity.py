#!/usr/bin/python3
"""How far the reference's final latents move when one piece of SDXL semantics changes: shows that the tests' 1e-3
bound separates the variants (docs/sdxl.md, "Compared with PyTorch").

  /usr/bin/python3 scripts/reference/sdxl/sensitivity.py --tiny-sdxl out/tiny-sdxl [--fixture tests/fixtures/tiny-sdxl-torch]
"""
import argparse
import json
import os

import torch

import make_fixture as mf
from compare_latents import read
from reference_schedulers import DpmSolverMultistep, EulerDiscrete, alphas_cumprod


def rel(a, b):
    return float((a - b).abs().max() / b.abs().max())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny-sdxl", required=True)
    ap.add_argument("--fixture", default="tests/fixtures/tiny-sdxl-torch")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.manual_seed(mf.UNET_SEED)
    unet = mf.UNet2DConditionModel(mf.UNET_CONFIG).eval()  # the same seeded weights as the export
    d = args.tiny_sdxl
    enc1, enc2 = mf.load_text_encoder(os.path.join(d, "text_encoder")), mf.load_text_encoder(os.path.join(d, "text_encoder_2"))
    tok1, tok2 = mf.ClipTokenizer(os.path.join(d, "tokenizer"), 49407), mf.ClipTokenizer(os.path.join(d, "tokenizer_2"), 0)
    pe, po = mf.encode_prompt(enc1, enc2, tok1(mf.PROMPT), tok2(mf.PROMPT))
    with open(os.path.join(d, "scheduler", "scheduler_config.json")) as f:
        cfg = json.load(f)
    ref = {k: torch.from_numpy(v.copy()) for k, v in read(os.path.join(args.fixture, "loop", "latents.safetensors")).items()}
    init, size = ref["latents"], mf.LATENT * 8
    tid = torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32)

    def loop(sched, time_ids=tid, negative=None):
        if negative is None:
            return mf.sdxl_loop(unet, sched, init, pe, po, time_ids, mf.GUIDANCE)
        ne, npool = negative
        lat = init * sched.init_noise_sigma
        for t in sched.timesteps:
            x = sched.scale_model_input(torch.cat([lat] * 2), t)
            eps = unet(x, t.float().reshape(1).expand(2), torch.cat([ne, pe]), torch.cat([npool, po]), time_ids.repeat(2, 1))
            u, c = eps.chunk(2)
            lat = sched.step(u + mf.GUIDANCE * (c - u), t, lat)
        return lat

    print(f"reference reproduced (euler): {rel(loop(EulerDiscrete(cfg, mf.STEPS)), ref['final.euler']):.1e}")
    s = DpmSolverMultistep(cfg, mf.STEPS)
    ac = alphas_cumprod(cfg)
    s.sigmas[-1] = float(((1 - ac[0]) / ac[0]) ** 0.5)
    print(f"dpmpp-2m, final sigma from alphas_cumprod[0] (diffusers before final_sigmas_type): {rel(loop(s), ref['final.dpmpp-2m']):.1e}")
    s = EulerDiscrete(cfg, mf.STEPS)
    s.init_noise_sigma = float(s.sigmas.max())
    print(f"euler, init_noise_sigma = sigma_max (linspace/trailing rule): {rel(loop(s), ref['final.euler']):.1e}")
    negative = mf.encode_prompt(enc1, enc2, tok1(""), tok2(""))
    print(f"euler, negative \"\" encoded instead of force-zeros: {rel(loop(EulerDiscrete(cfg, mf.STEPS), negative=negative), ref['final.euler']):.1e}")
    cropped = torch.tensor([[size, size, 16, 32, size, size]], dtype=torch.float32)
    print(f"euler, crop (16, 32) in time_ids: {rel(loop(EulerDiscrete(cfg, mf.STEPS), time_ids=cropped), ref['final.euler']):.1e}")


if __name__ == "__main__":
    main()
