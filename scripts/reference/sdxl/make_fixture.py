#!/usr/bin/python3
"""Writes tests/fixtures/tiny-sdxl-torch: a tiny SDXL UNet exported by torch.onnx.export from a re-implementation of
diffusers' UNet2DConditionModel (tiny_sdxl_modules.py), and PyTorch reference results for it:

  unet/model.onnx, unet/config.json   the exported UNet (optimum's names: sample, timestep, encoder_hidden_states,
                                      text_embeds, time_ids -> out_sample), seeded random weights
  loop/case.json                      prompt, token ids of both tokenizers, steps, guidance, sizes
  loop/conditioning.safetensors       the prompt's encoder_hidden_states [1,77,64] and text_embeds [1,32]
  loop/latents.safetensors            latents (the fixed unit-variance initial latents, the key --init-latents reads) and final.<scheduler> for
                                      euler, ddim, dpmpp-2m: StableDiffusionXLPipeline's loop run in PyTorch
  membranes/spm.safetensors           rank 2, alpha 4 on every attention and feed-forward linear of every transformer
                                      layer, official SDXL key layout (lora_unet_...)
  membranes/inputs.safetensors        sample, timestep, encoder_hidden_states, text_embeds, time_ids, R
  membranes/expected.safetensors      out_sample (membranes at case.json's multiplier), out_sample_base, and
                                      grad.<key> = d sum(out_sample * R) / d tensor for every membrane tensor
  membranes/case.json
  builder/expected.safetensors        out_sample of the project's own tiny SDXL UNet (spm build-model --preset
                                      tiny-sdxl --seed 21) run by the PyTorch UNet on membranes/inputs.safetensors

The text encoders are NOT re-exported: the comparison starts from the project's own tiny SDXL text encoders
(`spm build-model --preset tiny-sdxl --seed 21`, the folder the tests build), whose ONNX weights are read here into a
PyTorch CLIPTextModel / CLIPTextModelWithProjection. So the reference computes the prompt embeddings with PyTorch too,
and the tests check both the embeddings and the final latents.

Usage (Debian: apt-get install python3-torch python3-onnx):
  spm build-model --preset tiny-sdxl --seed 21 --out out/tiny-sdxl
  /usr/bin/python3 scripts/reference/sdxl/make_fixture.py --tiny-sdxl out/tiny-sdxl --out tests/fixtures/tiny-sdxl-torch
"""
import argparse
import json
import os
import re
import struct

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch.nn import functional as F

from reference_schedulers import SCHEDULERS
from tiny_sdxl_modules import ClipTextModel, UNet2DConditionModel

UNET_SEED = 2121
PROMPT = "a red circle on a blue square"
STEPS = 5
GUIDANCE = 5.0
LATENT = 16  # latents 16x16: 128x128 images
RANK, ALPHA, MULTIPLIER = 2, 4.0, 0.75

# The tiny SDXL UNet: the structure of diffusers' SDXL test UNet (DownBlock2D + CrossAttnDownBlock2D, heads 2/4, two
# transformer layers per block, linear projections, text_time), with 32 channels in both blocks to keep the file small
# and 8 normalisation groups: with 32 groups of one channel each, GroupNorm would remove the time embedding that every
# resnet adds per channel, and timestep, text_embeds and time_ids would not reach the output (in SDXL, 10+ per group).
UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel",
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
    "only_cross_attention": False,
    "block_out_channels": [32, 32],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 8,
    "norm_eps": 1e-05,
    "cross_attention_dim": 64,
    "attention_head_dim": [2, 4],
    "dual_cross_attention": False,
    "use_linear_projection": True,
    "class_embed_type": None,
    "resnet_time_scale_shift": "default",
    "time_embedding_type": "positional",
    "conv_in_kernel": 3,
    "conv_out_kernel": 3,
    "transformer_layers_per_block": 2,
    "addition_embed_type": "text_time",
    "projection_class_embeddings_input_dim": 80,
    "addition_time_embed_dim": 8,
    "addition_embed_type_num_heads": 64,
}


# ----------------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------------

def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        data = t.detach().contiguous().to(torch.float32).numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def write_json(path, obj):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")


# ----------------------------------------------------------------------------------------------------------------------
# Tokenizer: CLIP's byte-level BPE (enough for lower-case ASCII prompts: no ftfy clean-up needed)
# ----------------------------------------------------------------------------------------------------------------------

class ClipTokenizer:
    def __init__(self, folder, pad_id):
        with open(os.path.join(folder, "vocab.json")) as f:
            self.vocab = json.load(f)
        with open(os.path.join(folder, "merges.txt")) as f:
            lines = f.read().split("\n")[1:49152 - 256 - 2 + 1]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(lines)}
        self.pad_id = pad_id

    def _bpe(self, word):
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 30), k) for k, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, k = min(pairs)
            if rank == 1 << 30:
                break
            first, second = parts[k], parts[k + 1]
            merged, j = [], 0
            while j < len(parts):
                if j < len(parts) - 1 and parts[j] == first and parts[j + 1] == second:
                    merged.append(first + second)
                    j += 2
                else:
                    merged.append(parts[j])
                    j += 1
            parts = merged
        return parts

    def __call__(self, text, length=77):
        words = re.findall(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+", " ".join(text.lower().split()))
        ids = [49406] + [self.vocab[p] for w in words for p in self._bpe(w)][: length - 2] + [49407]
        return ids + [self.pad_id] * (length - len(ids))


# ----------------------------------------------------------------------------------------------------------------------
# Text encoders: the project's tiny ONNX encoders' weights in the PyTorch CLIP modules
# ----------------------------------------------------------------------------------------------------------------------

def load_text_encoder(folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    model = ClipTextModel(cfg["vocab_size"], cfg["max_position_embeddings"], cfg["hidden_size"], cfg["num_hidden_layers"],
                          cfg["num_attention_heads"], cfg["intermediate_size"], cfg["hidden_act"], cfg.get("projection_dim"))
    graph = onnx.load(os.path.join(folder, "model.onnx")).graph
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    # The builder names embeddings, norms and biases after the module; linear weights are MatMul operands [in, out]
    # named onnx::MatMul_N, in module order (q, k, v, out, fc1, fc2 per layer, then the projection).
    matmuls = iter(inits[t.name] for t in graph.initializer if t.name.startswith("onnx::MatMul"))
    state = {"token_embedding.weight": inits["tok.weight"], "position_embedding.weight": inits["pos.weight"],
             "final_layer_norm.weight": inits["final_layer_norm.weight"], "final_layer_norm.bias": inits["final_layer_norm.bias"]}
    for i in range(cfg["num_hidden_layers"]):
        p = f"layers.{i}."
        for n in ("layer_norm1", "layer_norm2"):
            state[p + n + ".weight"], state[p + n + ".bias"] = inits[p + n + ".weight"], inits[p + n + ".bias"]
        for n in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "mlp.fc1", "mlp.fc2"):
            state[p + n + ".weight"] = next(matmuls).T.contiguous()
            state[p + n + ".bias"] = inits[p + n.split(".")[-1] + ".bias"]
    if model.text_projection is not None:
        state["text_projection.weight"] = next(matmuls).T.contiguous()
    if next(matmuls, None) is not None:
        raise SystemExit(f"{folder}: more MatMul weights than a CLIP text model of this config has")
    model.load_state_dict(state, strict=True)
    return model.eval()


def load_builder_unet(folder):
    """The project's own tiny SDXL UNet (`spm build-model --preset tiny-sdxl`) in the PyTorch module: initializers named
    after the module, except linear weights of MatMuls ([in, out], onnx::MatMul_N) named by their node's scope."""
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    model = UNet2DConditionModel(cfg)
    graph = onnx.load(os.path.join(folder, "model.onnx")).graph
    inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    state = {k: v for k, v in inits.items() if not k.startswith("onnx::")}
    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1].startswith("onnx::") and node.input[1] in inits:
            module = node.name.strip("/").rsplit("/", 1)[0].replace("/", ".")  # /a/b.0/to_q/MatMul -> a.b.0.to_q
            state[module + ".weight"] = inits[node.input[1]].T.contiguous()
    # GroupNorm's scale and bias are stored [C, 1, 1] (they multiply the NCHW output after InstanceNormalization).
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    state = {k: v.reshape(shapes[k]) if k in shapes and v.numel() == shapes[k].numel() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


def encode_prompt(enc1, enc2, ids1, ids2):
    """StableDiffusionXLPipeline.encode_prompt, clip_skip None: penultimate hidden states of both encoders
    concatenated, pooled = text_encoder_2's text_embeds."""
    _, _, hidden1 = enc1(torch.tensor([ids1]))
    pooled, _, hidden2 = enc2(torch.tensor([ids2]))
    return torch.cat([hidden1[-2], hidden2[-2]], dim=-1), pooled


# ----------------------------------------------------------------------------------------------------------------------
# The reference denoising loop
# ----------------------------------------------------------------------------------------------------------------------

def sdxl_loop(unet, scheduler, init_latents, prompt_embeds, pooled, time_ids, guidance):
    """StableDiffusionXLPipeline.__call__ from prepared latents: negative_prompt None with force_zeros_for_empty_prompt
    gives zero negative embeddings; rows are [negative, positive]; guidance_rescale 0."""
    embeds = torch.cat([torch.zeros_like(prompt_embeds), prompt_embeds])
    text_embeds = torch.cat([torch.zeros_like(pooled), pooled])
    add_time_ids = time_ids.repeat(2, 1)
    latents = init_latents * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.scale_model_input(torch.cat([latents] * 2), t)
        eps = unet(x, t.float().reshape(1).expand(2), embeds, text_embeds, add_time_ids)
        uncond, cond = eps.chunk(2)
        latents = scheduler.step(uncond + guidance * (cond - uncond), t, latents)
    return latents


# ----------------------------------------------------------------------------------------------------------------------
# Membranes
# ----------------------------------------------------------------------------------------------------------------------

class Membrane(torch.nn.Module):
    """y = W x + multiplier * (alpha / rank) * up(down(x)): the SPM/LoRA wrapper of the official trainer."""

    def __init__(self, base, down, up, alpha):
        super().__init__()
        self.base = base
        self.down, self.up = torch.nn.Parameter(down), torch.nn.Parameter(up)
        self.scale = alpha / down.shape[0]
        self.multiplier = 0.0

    def forward(self, x):
        return self.base(x) + self.multiplier * self.scale * F.linear(F.linear(x, self.down), self.up)


MEMBRANE_LAYERS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0",
                   "attn2.to_q", "attn2.to_k", "attn2.to_v", "attn2.to_out.0", "ff.net.0.proj", "ff.net.2")


def attach_membranes(unet, gen):
    membranes = {}
    for path, module in list(unet.named_modules()):
        if not re.search(r"\.transformer_blocks\.\d+$", path):
            continue
        for leaf in MEMBRANE_LAYERS:
            parent = module
            *heads, last = leaf.split(".")
            for h in heads:
                parent = parent[int(h)] if h.isdigit() else getattr(parent, h)
            base = parent[int(last)] if last.isdigit() else getattr(parent, last)
            # Both factors non-zero (the trainer starts up at zero) so the outputs and both gradients are exercised.
            down = torch.randn(RANK, base.in_features, generator=gen) / base.in_features ** 0.5
            up = torch.randn(base.out_features, RANK, generator=gen) * 0.2
            m = Membrane(base, down, up, ALPHA)
            if last.isdigit():
                parent[int(last)] = m
            else:
                setattr(parent, last, m)
            membranes["lora_unet_" + f"{path}.{leaf}".replace(".", "_")] = m
    return membranes


# ----------------------------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny-sdxl", required=True, help="folder written by `spm build-model --preset tiny-sdxl --seed 21`")
    ap.add_argument("--out", required=True, help="fixture folder to write (tests/fixtures/tiny-sdxl-torch)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(1)

    # 1. The UNet, exported as optimum exports SDXL UNets.
    torch.manual_seed(UNET_SEED)
    unet = UNet2DConditionModel(UNET_CONFIG).eval()
    gen = torch.Generator().manual_seed(UNET_SEED + 1)
    example = (torch.randn(2, 4, LATENT, LATENT, generator=gen), torch.tensor([999.0, 500.0]),
               torch.randn(2, 77, 64, generator=gen), torch.randn(2, 32, generator=gen),
               torch.tensor([[128.0, 128, 0, 0, 128, 128]] * 2))
    unet_dir = os.path.join(args.out, "unet")
    os.makedirs(unet_dir, exist_ok=True)
    torch.onnx.export(unet, example, os.path.join(unet_dir, "model.onnx"), opset_version=14, do_constant_folding=True,
                      input_names=["sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids"],
                      output_names=["out_sample"],
                      dynamic_axes={"sample": {0: "batch", 2: "height", 3: "width"}, "timestep": {0: "batch"},
                                    "encoder_hidden_states": {0: "batch", 1: "sequence"}, "text_embeds": {0: "batch"},
                                    "time_ids": {0: "batch"}, "out_sample": {0: "batch", 2: "height", 3: "width"}})
    write_json(os.path.join(unet_dir, "config.json"), UNET_CONFIG)
    params = sum(p.numel() for p in unet.parameters())
    print(f"unet: {params:,} parameters -> {unet_dir}")

    # 2. Prompt embeddings with PyTorch CLIP on the project's encoders' weights; the SDXL loop for three schedulers.
    enc1 = load_text_encoder(os.path.join(args.tiny_sdxl, "text_encoder"))
    enc2 = load_text_encoder(os.path.join(args.tiny_sdxl, "text_encoder_2"))
    tok1 = ClipTokenizer(os.path.join(args.tiny_sdxl, "tokenizer"), pad_id=49407)
    tok2 = ClipTokenizer(os.path.join(args.tiny_sdxl, "tokenizer_2"), pad_id=0)  # tokenizer_2 pads with "!"
    ids1, ids2 = tok1(PROMPT), tok2(PROMPT)
    prompt_embeds, pooled = encode_prompt(enc1, enc2, ids1, ids2)
    size = LATENT * 8
    time_ids = torch.tensor([[size, size, 0, 0, size, size]], dtype=torch.float32)  # original, crop (0,0), target
    with open(os.path.join(args.tiny_sdxl, "scheduler", "scheduler_config.json")) as f:
        sched_cfg = json.load(f)
    init = torch.randn(1, 4, LATENT, LATENT, generator=torch.Generator().manual_seed(UNET_SEED + 2))
    latents = {"latents": init}  # the key `spm generate --init-latents` reads
    for name, cls in SCHEDULERS.items():
        final = sdxl_loop(unet, cls(sched_cfg, STEPS), init, prompt_embeds, pooled, time_ids, GUIDANCE)
        latents["final." + name] = final
        print(f"{name}: final latents |max| {final.abs().max():.4f}, timesteps {cls(sched_cfg, STEPS).timesteps.tolist()}")
    loop_dir = os.path.join(args.out, "loop")
    write_safetensors(os.path.join(loop_dir, "latents.safetensors"), latents)
    write_safetensors(os.path.join(loop_dir, "conditioning.safetensors"),
                      {"encoder_hidden_states": prompt_embeds, "text_embeds": pooled})
    write_json(os.path.join(loop_dir, "case.json"), {
        "prompt": PROMPT, "negative_prompt": None, "force_zeros_for_empty_prompt": True, "steps": STEPS,
        "guidance_scale": GUIDANCE, "width": size, "height": size, "time_ids": time_ids[0].tolist(),
        "schedulers": list(SCHEDULERS), "tokenizer_ids": ids1, "tokenizer_2_ids": ids2,
        "text_encoders": "spm build-model --preset tiny-sdxl --seed 21",
        "note": "StableDiffusionXLPipeline semantics from latents.safetensors' latents (unit variance, multiplied by "
                "init_noise_sigma); rows [zero negative, prompt]; final.<scheduler> are the latents before the VAE"})

    # 3. Membranes: outputs with and without, gradients of sum(out_sample * R).
    gen = torch.Generator().manual_seed(UNET_SEED + 3)
    inputs = {"sample": torch.randn(2, 4, LATENT, LATENT, generator=gen), "timestep": torch.tensor([901.0, 351.0]),
              "encoder_hidden_states": torch.randn(2, 77, 64, generator=gen), "text_embeds": torch.randn(2, 32, generator=gen),
              "time_ids": torch.tensor([[128.0, 128, 0, 0, 128, 128], [1024.0, 768, 16, 32, 512, 256]]),
              "R": torch.randn(2, 4, LATENT, LATENT, generator=gen)}
    unet_args = [inputs[k] for k in ("sample", "timestep", "encoder_hidden_states", "text_embeds", "time_ids")]
    membranes = attach_membranes(unet, gen)
    base = unet(*unet_args)
    for m in membranes.values():
        m.multiplier = MULTIPLIER
    with torch.enable_grad():
        out = unet(*unet_args)
        (out * inputs["R"]).sum().backward()
    expected = {"out_sample": out, "out_sample_base": base}
    spm = {}
    for key, m in membranes.items():
        spm[key + ".lora_down.weight"], spm[key + ".lora_up.weight"] = m.down, m.up
        spm[key + ".alpha"] = torch.tensor([ALPHA])
        expected[f"grad.{key}.lora_down.weight"], expected[f"grad.{key}.lora_up.weight"] = m.down.grad, m.up.grad
    mem_dir = os.path.join(args.out, "membranes")
    write_safetensors(os.path.join(mem_dir, "spm.safetensors"), spm,
                      {"prompts": "reference concept", "rank": str(RANK), "alpha": str(ALPHA)})
    write_safetensors(os.path.join(mem_dir, "inputs.safetensors"), inputs)
    write_safetensors(os.path.join(mem_dir, "expected.safetensors"), expected)
    change = float((out - base).abs().max() / base.abs().max())
    write_json(os.path.join(mem_dir, "case.json"), {
        "multiplier": MULTIPLIER, "rank": RANK, "alpha": ALPHA, "membranes": len(membranes),
        "layers": list(MEMBRANE_LAYERS), "loss": "sum(out_sample * R)",
        "note": "y = W x + multiplier * (alpha/rank) * up(down(x)) on every attention and feed-forward Linear of every "
                "transformer layer (transformer_blocks.N) of every Transformer2DModel"})
    print(f"membranes: {len(membranes)} layers, output change {change:.3e} of max |base|")

    # 4. The project's own tiny SDXL UNet (the one every other SDXL test uses) in PyTorch, on the same inputs.
    builder = load_builder_unet(os.path.join(args.tiny_sdxl, "unet"))
    builder_out = builder(*unet_args)
    write_safetensors(os.path.join(args.out, "builder", "expected.safetensors"), {"out_sample": builder_out})
    write_json(os.path.join(args.out, "builder", "case.json"), {
        "unet": "spm build-model --preset tiny-sdxl --seed 21: unet/",
        "inputs": "membranes/inputs.safetensors (sample, timestep, encoder_hidden_states, text_embeds, time_ids)",
        "note": "out_sample of the project-built UNet's weights run by the PyTorch UNet2DConditionModel re-implementation"})
    print(f"builder unet: {sum(p.numel() for p in builder.parameters()):,} parameters, |out_sample| max {builder_out.abs().max():.4f}")


if __name__ == "__main__":
    main()
