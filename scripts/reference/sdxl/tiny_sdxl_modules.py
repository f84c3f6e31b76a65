"""A small PyTorch re-implementation of the diffusers / transformers modules a tiny SDXL pipeline uses.

Written from the diffusers and transformers sources (UNet2DConditionModel and its blocks, CLIPTextModel,
CLIPTextModelWithProjection), with their parameter names and forward semantics, so that torch.onnx.export produces
the graph structure and node names of a real optimum SDXL export. Only the configuration SDXL uses is implemented
(epsilon UNet, default resnets, linear transformer projections, text_time addition embedding, no dropout).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------------------------------------------------
# UNet (diffusers.models.unets.unet_2d_condition and the blocks it builds)
# ----------------------------------------------------------------------------------------------------------------------

def timestep_embedding(timesteps, dim, flip_sin_to_cos, downscale_freq_shift, max_period=10000):
    """diffusers.models.embeddings.get_timestep_embedding."""
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(0, half, dtype=torch.float32) / (half - downscale_freq_shift)
    emb = timesteps[:, None].float() * torch.exp(exponent)[None, :]
    emb = torch.cat([torch.sin(emb), torch.cos(emb)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2 == 1:
        emb = F.pad(emb, (0, 1, 0, 0))
    return emb


class Timesteps(nn.Module):
    def __init__(self, num_channels, flip_sin_to_cos, downscale_freq_shift):
        super().__init__()
        self.num_channels, self.flip, self.shift = num_channels, flip_sin_to_cos, downscale_freq_shift

    def forward(self, t):
        return timestep_embedding(t, self.num_channels, self.flip, self.shift)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_channels, time_embed_dim):
        super().__init__()
        self.linear_1 = nn.Linear(in_channels, time_embed_dim)
        self.act = nn.SiLU()
        self.linear_2 = nn.Linear(time_embed_dim, time_embed_dim)

    def forward(self, x):
        return self.linear_2(self.act(self.linear_1(x)))


class ResnetBlock2D(nn.Module):
    """time_embedding_norm "default", output_scale_factor 1, eps 1e-5 (norm_eps), norm_num_groups groups."""

    def __init__(self, in_channels, out_channels, temb_channels, groups, eps=1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=eps, affine=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1)
        self.time_emb_proj = nn.Linear(temb_channels, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=eps, affine=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1)
        self.nonlinearity = nn.SiLU()
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x, temb):
        h = self.conv1(self.nonlinearity(self.norm1(x)))
        h = h + self.time_emb_proj(self.nonlinearity(temb))[:, :, None, None]
        h = self.conv2(self.nonlinearity(self.norm2(h)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class Downsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x):
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Attention(nn.Module):
    """diffusers Attention with AttnProcessor semantics: to_q/to_k/to_v without bias, to_out.0 with bias."""

    def __init__(self, query_dim, heads, dim_head, cross_attention_dim=None):
        super().__init__()
        inner = heads * dim_head
        kv_dim = cross_attention_dim or query_dim
        self.heads, self.scale = heads, dim_head ** -0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(kv_dim, inner, bias=False)
        self.to_v = nn.Linear(kv_dim, inner, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(inner, query_dim), nn.Dropout(0.0)])

    def forward(self, x, context=None):
        context = x if context is None else context
        b, n, _ = x.shape
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)

        def heads(t):
            return t.reshape(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)

        q, k, v = heads(q), heads(k), heads(v)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        out = torch.matmul(scores.softmax(dim=-1), v)
        out = out.transpose(1, 2).reshape(b, n, -1)
        return self.to_out[1](self.to_out[0](out))


class GEGLU(nn.Module):
    def __init__(self, dim_in, dim_out):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x):
        hidden, gate = self.proj(x).chunk(2, dim=-1)
        return hidden * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim, mult=4):
        super().__init__()
        inner = dim * mult
        self.net = nn.ModuleList([GEGLU(dim, inner), nn.Dropout(0.0), nn.Linear(inner, dim)])

    def forward(self, x):
        for m in self.net:
            x = m(x)
        return x


class BasicTransformerBlock(nn.Module):
    """norm_type "layer_norm": self-attention, cross-attention, GEGLU feed-forward, each pre-normed with a residual."""

    def __init__(self, dim, heads, dim_head, cross_attention_dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.attn1 = Attention(dim, heads, dim_head)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.attn2 = Attention(dim, heads, dim_head, cross_attention_dim)
        self.norm3 = nn.LayerNorm(dim, eps=1e-5)
        self.ff = FeedForward(dim)

    def forward(self, x, context):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class Transformer2DModel(nn.Module):
    """Continuous input with use_linear_projection: GroupNorm (eps 1e-6), linear proj_in, N blocks, linear proj_out."""

    def __init__(self, heads, dim_head, in_channels, num_layers, cross_attention_dim, groups):
        super().__init__()
        inner = heads * dim_head
        self.norm = nn.GroupNorm(groups, in_channels, eps=1e-6, affine=True)
        self.proj_in = nn.Linear(in_channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, cross_attention_dim) for _ in range(num_layers)])
        self.proj_out = nn.Linear(inner, in_channels)

    def forward(self, x, context):
        b, _, h, w = x.shape
        residual = x
        x = self.norm(x)
        x = x.permute(0, 2, 3, 1).reshape(b, h * w, x.shape[1])
        x = self.proj_in(x)
        for block in self.transformer_blocks:
            x = block(x, context)
        x = self.proj_out(x)
        x = x.reshape(b, h, w, x.shape[-1]).permute(0, 3, 1, 2)
        return x + residual


class DownBlock2D(nn.Module):
    def __init__(self, in_ch, out_ch, temb, layers, add_downsample, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, temb, groups) for i in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(out_ch)]) if add_downsample else None

    def forward(self, x, temb, context):
        states = []
        for r in self.resnets:
            x = r(x, temb)
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class CrossAttnDownBlock2D(nn.Module):
    def __init__(self, in_ch, out_ch, temb, layers, add_downsample, heads, tlayers, cross_dim, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(in_ch if i == 0 else out_ch, out_ch, temb, groups) for i in range(layers)])
        self.attentions = nn.ModuleList(
            [Transformer2DModel(heads, out_ch // heads, out_ch, tlayers, cross_dim, groups) for _ in range(layers)])
        self.downsamplers = nn.ModuleList([Downsample2D(out_ch)]) if add_downsample else None

    def forward(self, x, temb, context):
        states = []
        for r, a in zip(self.resnets, self.attentions):
            x = a(r(x, temb), context)
            states.append(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
            states.append(x)
        return x, states


class UNetMidBlock2DCrossAttn(nn.Module):
    def __init__(self, ch, temb, heads, tlayers, cross_dim, groups):
        super().__init__()
        self.attentions = nn.ModuleList([Transformer2DModel(heads, ch // heads, ch, tlayers, cross_dim, groups)])
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, temb, groups), ResnetBlock2D(ch, ch, temb, groups)])

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        for a, r in zip(self.attentions, self.resnets[1:]):
            x = r(a(x, context), temb)
        return x


def _up_resnets(in_ch, out_ch, prev_out, temb, layers, groups):
    # diffusers: the last resnet takes the block's input-width skip, the first the previous block's output.
    return nn.ModuleList([
        ResnetBlock2D((prev_out if i == 0 else out_ch) + (in_ch if i == layers - 1 else out_ch), out_ch, temb, groups)
        for i in range(layers)])


class CrossAttnUpBlock2D(nn.Module):
    def __init__(self, in_ch, out_ch, prev_out, temb, layers, add_upsample, heads, tlayers, cross_dim, groups):
        super().__init__()
        self.resnets = _up_resnets(in_ch, out_ch, prev_out, temb, layers, groups)
        self.attentions = nn.ModuleList(
            [Transformer2DModel(heads, out_ch // heads, out_ch, tlayers, cross_dim, groups) for _ in range(layers)])
        self.upsamplers = nn.ModuleList([Upsample2D(out_ch)]) if add_upsample else None

    def forward(self, x, skips, temb, context):
        for r, a in zip(self.resnets, self.attentions):
            x = torch.cat([x, skips.pop()], dim=1)
            x = a(r(x, temb), context)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UpBlock2D(nn.Module):
    def __init__(self, in_ch, out_ch, prev_out, temb, layers, add_upsample, groups):
        super().__init__()
        self.resnets = _up_resnets(in_ch, out_ch, prev_out, temb, layers, groups)
        self.upsamplers = nn.ModuleList([Upsample2D(out_ch)]) if add_upsample else None

    def forward(self, x, skips, temb, context):
        for r in self.resnets:
            x = r(torch.cat([x, skips.pop()], dim=1), temb)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class UNet2DConditionModel(nn.Module):
    """The SDXL configuration of diffusers' UNet2DConditionModel (see config() for the keys it honours)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        ch = cfg["block_out_channels"]
        heads = cfg["attention_head_dim"]  # diffusers' naming quirk: these are the numbers of heads
        tl = cfg["transformer_layers_per_block"]
        tl = tl if isinstance(tl, list) else [tl] * len(ch)
        lpb, cross, g = cfg["layers_per_block"], cfg["cross_attention_dim"], cfg["norm_num_groups"]
        temb = ch[0] * 4
        self.conv_in = nn.Conv2d(cfg["in_channels"], ch[0], 3, padding=1)
        self.time_proj = Timesteps(ch[0], cfg["flip_sin_to_cos"], cfg["freq_shift"])
        self.time_embedding = TimestepEmbedding(ch[0], temb)
        self.add_time_proj = Timesteps(cfg["addition_time_embed_dim"], cfg["flip_sin_to_cos"], cfg["freq_shift"])
        self.add_embedding = TimestepEmbedding(cfg["projection_class_embeddings_input_dim"], temb)

        self.down_blocks = nn.ModuleList()
        out = ch[0]
        for i, kind in enumerate(cfg["down_block_types"]):
            inp, out = out, ch[i]
            last = i == len(ch) - 1
            if kind == "DownBlock2D":
                self.down_blocks.append(DownBlock2D(inp, out, temb, lpb, not last, g))
            else:
                self.down_blocks.append(CrossAttnDownBlock2D(inp, out, temb, lpb, not last, heads[i], tl[i], cross, g))
        self.mid_block = UNetMidBlock2DCrossAttn(ch[-1], temb, heads[-1], tl[-1], cross, g)

        self.up_blocks = nn.ModuleList()
        rch, rheads, rtl = list(reversed(ch)), list(reversed(heads)), list(reversed(tl))
        out = rch[0]
        for i, kind in enumerate(cfg["up_block_types"]):
            last = i == len(ch) - 1
            prev, out = out, rch[i]
            inp = rch[min(i + 1, len(ch) - 1)]
            if kind == "CrossAttnUpBlock2D":
                self.up_blocks.append(CrossAttnUpBlock2D(inp, out, prev, temb, lpb + 1, not last, rheads[i], rtl[i], cross, g))
            else:
                self.up_blocks.append(UpBlock2D(inp, out, prev, temb, lpb + 1, not last, g))
        self.conv_norm_out = nn.GroupNorm(g, ch[0], eps=cfg["norm_eps"])
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(ch[0], cfg["out_channels"], 3, padding=1)

    def forward(self, sample, timestep, encoder_hidden_states, text_embeds, time_ids):
        b = sample.shape[0]
        t = timestep.expand(b) if timestep.dim() == 1 else timestep.reshape(1).expand(b)
        emb = self.time_embedding(self.time_proj(t))
        # addition_embed_type "text_time": the six size ids embedded one by one, after the pooled text embedding.
        time_embeds = self.add_time_proj(time_ids.flatten()).reshape(b, -1)
        emb = emb + self.add_embedding(torch.cat([text_embeds, time_embeds], dim=-1))

        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, states = block(x, emb, encoder_hidden_states)
            skips.extend(states)
        x = self.mid_block(x, emb, encoder_hidden_states)
        for block in self.up_blocks:
            n = len(block.resnets)
            block_skips = skips[-n:]
            skips = skips[:-n]
            x = block(x, block_skips, emb, encoder_hidden_states)
        return self.conv_out(self.conv_act(self.conv_norm_out(x)))


# ----------------------------------------------------------------------------------------------------------------------
# Text encoders (transformers.models.clip.modeling_clip)
# ----------------------------------------------------------------------------------------------------------------------

def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class ClipAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x, mask):
        b, n, d = x.shape

        def heads(t):
            return t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = heads(self.q_proj(x) * self.scale), heads(self.k_proj(x)), heads(self.v_proj(x))
        w = torch.matmul(q, k.transpose(-1, -2)) + mask
        out = torch.matmul(w.softmax(dim=-1), v).transpose(1, 2).reshape(b, n, d)
        return self.out_proj(out)


class ClipMlp(nn.Module):
    def __init__(self, dim, inner, act):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, inner), nn.Linear(inner, dim)
        self.act = quick_gelu if act == "quick_gelu" else F.gelu

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class ClipEncoderLayer(nn.Module):
    def __init__(self, dim, heads, inner, act):
        super().__init__()
        self.self_attn = ClipAttention(dim, heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = ClipMlp(dim, inner, act)
        self.layer_norm2 = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class ClipTextModel(nn.Module):
    """CLIPTextModel (projection_dim None) or CLIPTextModelWithProjection: returns (pooled or text_embeds,
    last_hidden_state, [hidden_states.0 .. hidden_states.N]); hidden states are before the final layer norm."""

    def __init__(self, vocab, positions, dim, layers, heads, inner, act, projection_dim=None):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, dim)
        self.position_embedding = nn.Embedding(positions, dim)
        self.layers = nn.ModuleList([ClipEncoderLayer(dim, heads, inner, act) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(dim, eps=1e-5)
        self.text_projection = nn.Linear(dim, projection_dim, bias=False) if projection_dim else None

    def forward(self, input_ids):
        n = input_ids.shape[1]
        x = self.token_embedding(input_ids) + self.position_embedding(torch.arange(n))[None]
        mask = torch.full((n, n), torch.finfo(torch.float32).min).triu(1)[None, None]
        hidden = [x]
        for layer in self.layers:
            x = layer(x, mask)
            hidden.append(x)
        last = self.final_layer_norm(x)
        # The pooled output is the EOS token's state: the highest id in the row (49407; tokenizer_2 pads with 0).
        pooled = last[torch.arange(last.shape[0]), input_ids.argmax(dim=-1)]
        if self.text_projection is not None:
            pooled = self.text_projection(pooled)
        return pooled, last, hidden
