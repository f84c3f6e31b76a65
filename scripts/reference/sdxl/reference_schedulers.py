"""The three diffusers schedulers the SDXL reference loop runs, written from diffusers' formulas (epsilon prediction,
the SDXL base scheduler config: scaled_linear betas 0.00085..0.012, 1000 steps, "leading" spacing, steps_offset 1).

Each exposes what StableDiffusionXLPipeline uses: timesteps, init_noise_sigma, scale_model_input(x, t), step(eps, t, x).
Computations are in float64 and the results cast to float32, like diffusers' numpy set-up; the samples stay float32.
"""
import numpy as np
import torch


def alphas_cumprod(cfg):
    # diffusers builds the betas in float32 torch and takes the cumulative product in float32.
    betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, cfg["num_train_timesteps"], dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def leading(cfg, n, plus_one=False):
    """Leading spacing; plus_one is DPMSolverMultistep's variant (n + 1 points, the last dropped)."""
    if plus_one:
        ratio = cfg["num_train_timesteps"] // (n + 1)
        ts = (np.arange(0, n + 1) * ratio).round()[::-1][:-1].copy().astype(np.int64)
    else:
        ratio = cfg["num_train_timesteps"] // n
        ts = (np.arange(0, n) * ratio).round()[::-1].copy().astype(np.int64)
    return ts + cfg["steps_offset"]


class EulerDiscrete:
    """EulerDiscreteScheduler: interpolation_type linear, no Karras sigmas, s_churn 0."""

    def __init__(self, cfg, n):
        ac = alphas_cumprod(cfg).numpy()
        sigmas_all = ((1 - ac) / ac) ** 0.5
        ts = leading(cfg, n).astype(np.float32)
        sigmas = np.interp(ts, np.arange(0, len(sigmas_all)), sigmas_all)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(ts)
        max_sigma = float(self.sigmas.max())
        # diffusers: sqrt(sigma_max^2 + 1), except for linspace/trailing spacing (sigma_max alone).
        self.init_noise_sigma = (max_sigma ** 2 + 1) ** 0.5
        self.i = 0

    def scale_model_input(self, x, t):
        sigma = self.sigmas[self.i]
        return x / ((sigma ** 2 + 1) ** 0.5)

    def step(self, eps, t, x):
        sigma, sigma_next = self.sigmas[self.i], self.sigmas[self.i + 1]
        x0 = x - sigma * eps
        derivative = (x - x0) / sigma
        self.i += 1
        return x + derivative * (sigma_next - sigma)


class Ddim:
    """DDIMScheduler from the SDXL config: set_alpha_to_one false, eta 0, no clipping or thresholding."""

    def __init__(self, cfg, n):
        self.ac = alphas_cumprod(cfg)
        self.final = self.ac[0]  # set_alpha_to_one false
        self.timesteps = torch.from_numpy(leading(cfg, n))
        self.ratio = cfg["num_train_timesteps"] // n
        self.init_noise_sigma = 1.0

    def scale_model_input(self, x, t):
        return x

    def step(self, eps, t, x):
        prev = int(t) - self.ratio
        a_t = self.ac[int(t)]
        a_prev = self.ac[prev] if prev >= 0 else self.final
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
        return a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps


class DpmSolverMultistep:
    """DPMSolverMultistepScheduler: dpmsolver++, solver_order 2, midpoint, lower_order_final, final_sigmas_type zero."""

    def __init__(self, cfg, n):
        ac = alphas_cumprod(cfg).numpy()
        sigmas_all = ((1 - ac) / ac) ** 0.5
        ts = leading(cfg, n, plus_one=True)
        sigmas = np.interp(ts, np.arange(0, len(sigmas_all)), sigmas_all)
        self.sigmas = torch.from_numpy(np.concatenate([sigmas, [0.0]]).astype(np.float32))
        self.timesteps = torch.from_numpy(ts)
        self.init_noise_sigma = 1.0
        self.outputs = [None, None]
        self.lower_order_nums = 0
        self.i = 0

    @staticmethod
    def _alpha_sigma(sigma):
        alpha = 1 / (sigma ** 2 + 1) ** 0.5
        return alpha, sigma * alpha

    def scale_model_input(self, x, t):
        return x

    def step(self, eps, t, x):
        i = self.i
        alpha_s0, sigma_s0 = self._alpha_sigma(self.sigmas[i])
        x0 = (x - sigma_s0 * eps) / alpha_s0  # convert_model_output, dpmsolver++ with epsilon prediction
        self.outputs = [self.outputs[1], x0]
        # final_sigmas_type "zero" makes the last step first order.
        last = i == len(self.timesteps) - 1
        alpha_t, sigma_t = self._alpha_sigma(self.sigmas[i + 1])
        lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
        lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
        h = lambda_t - lambda_s0
        if self.lower_order_nums < 1 or last:
            out = (sigma_t / sigma_s0) * x - alpha_t * (torch.exp(-h) - 1.0) * x0
        else:
            alpha_s1, sigma_s1 = self._alpha_sigma(self.sigmas[i - 1])
            lambda_s1 = torch.log(alpha_s1) - torch.log(sigma_s1)
            r0 = (lambda_s0 - lambda_s1) / h
            d0, m1 = self.outputs[1], self.outputs[0]
            d1 = (1.0 / r0) * (d0 - m1)
            out = (sigma_t / sigma_s0) * x - alpha_t * (torch.exp(-h) - 1.0) * d0 - 0.5 * (alpha_t * (torch.exp(-h) - 1.0)) * d1
        if self.lower_order_nums < 2:
            self.lower_order_nums += 1
        self.i += 1
        return out


SCHEDULERS = {"euler": EulerDiscrete, "ddim": Ddim, "dpmpp-2m": DpmSolverMultistep}
