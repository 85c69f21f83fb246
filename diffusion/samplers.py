"""Reverse-diffusion samplers, selected by name (sovits-4.1.md §13 "Inference").

Every sampler runs ``x`` from diffusion step ``t`` (``x`` ~ q(x_{t-1} | x_0), or pure noise) down
to the data, calling ``eps(x, step [B]) -> noise`` (the denoiser with its condition bound):

- ``ancestral`` (``infer_speedup <= 1`` or no method): DDPM ``p_sample`` for every step
  ``t-1 … 0``, x0 clamped to [-1, 1];
- ``ddim``: deterministic DDIM jumps over ``reversed(range(0, t, speedup))``;
- ``pndm``: PLMS (pseudo linear multistep) over the same steps; the first step is a 2-evaluation
  Heun-like start, then Adams–Bashforth of order 2, 3, 4 on the stored noises;
- ``dpm-solver`` / ``dpm-solver++``: multistep DPM-Solver of order 2 in noise / data prediction;
- ``unipc``: multistep UniPC (B(h) = e^h − 1, "bh2") of order 2, data prediction.

The last three solve the probability-flow ODE in continuous time on the *truncated* schedule
``betas[:t]`` (:class:`VPSchedule`): N = t keypoints at times ``(n + 1)/N``, log ᾱ interpolated
linearly, model time ``(τ − 1/N)·N`` (so N = t, the so-vits-svc patch: the model sees step
numbers 0 … t−1), ``t//speedup`` steps uniform in time from τ = 1 to 1/N. The first step is
first order; with ``lower_order_final`` the last step is first order as well (DPM-Solver only
when there are fewer than 10 steps; UniPC always, and UniPC skips its corrector there).

The update maths is written once: :func:`ddim_step` (DDIM / PNDM transfer) and
:func:`exp_integrator` (the exponential-integrator step shared by DPM-Solver, DPM-Solver++ and
UniPC); the samplers differ only in which noise / data estimates they feed it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["SAMPLERS", "VPSchedule", "ddim_step", "exp_integrator", "sample"]

Eps = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ----------------------------------------------------------------------------------------------
# discrete samplers (DDPM step numbers)
# ----------------------------------------------------------------------------------------------
def _full(x: torch.Tensor, step: int) -> torch.Tensor:
    return torch.full((x.shape[0],), int(step), device=x.device, dtype=torch.long)


def ddim_step(x: torch.Tensor, eps: torch.Tensor, a_t: torch.Tensor, a_prev: torch.Tensor):
    """DDIM transfer from ᾱ_t to ᾱ_prev given the noise estimate ``eps``:
    ``√ā_prev · (x/√ā_t + (√((1−ā_prev)/ā_prev) − √((1−ā_t)/ā_t)) · eps)``."""
    return a_prev.sqrt() * (
        x / a_t.sqrt() + (((1 - a_prev) / a_prev).sqrt() - ((1 - a_t) / a_t).sqrt()) * eps
    )


def ancestral(eps: Eps, x, buffers, t: int, speedup: int = 1, generator=None):
    """DDPM ancestral sampling over steps ``t-1 … 0`` (noise drawn from ``generator``)."""
    for i in reversed(range(t)):
        e = eps(x, _full(x, i))
        x0 = (buffers["sqrt_recip_alphas_cumprod"][i] * x
              - buffers["sqrt_recipm1_alphas_cumprod"][i] * e).clamp(-1.0, 1.0)  # fmt: skip
        mean = buffers["posterior_mean_coef1"][i] * x0 + buffers["posterior_mean_coef2"][i] * x
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        if i > 0:
            x = mean + (0.5 * buffers["posterior_log_variance_clipped"][i]).exp() * noise
        else:
            x = mean
    return x


def ddim(eps: Eps, x, buffers, t: int, speedup: int, generator=None):
    ac = buffers["alphas_cumprod"]
    for i in reversed(range(0, t, speedup)):
        x = ddim_step(x, eps(x, _full(x, i)), ac[i], ac[max(i - speedup, 0)])
    return x


_PLMS = {
    1: (3 / 2, -1 / 2),
    2: (23 / 12, -16 / 12, 5 / 12),
    3: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def pndm(eps: Eps, x, buffers, t: int, speedup: int, generator=None):
    """PLMS: ``eps' = Σ c_k·eps_{n−k}`` (Adams–Bashforth on the last ≤ 4 noises), then a DDIM
    transfer; the first step averages the noise at ``x`` and at its DDIM prediction."""
    ac = buffers["alphas_cumprod"]
    history: list[torch.Tensor] = []
    for i in reversed(range(0, t, speedup)):
        prev = max(i - speedup, 0)
        e = eps(x, _full(x, i))
        if not history:
            x_pred = ddim_step(x, e, ac[i], ac[prev])
            e_prime = (e + eps(x_pred, _full(x, prev))) / 2
        else:
            coefs = _PLMS[min(len(history), 3)]
            e_prime = coefs[0] * e
            for c, old in zip(coefs[1:], reversed(history)):
                e_prime = e_prime + c * old
        x = ddim_step(x, e_prime, ac[i], ac[prev])
        history = (history + [e])[-3:]
    return x


# ----------------------------------------------------------------------------------------------
# continuous-time ODE solvers on the truncated schedule
# ----------------------------------------------------------------------------------------------
class VPSchedule:
    """Discrete VP schedule ``betas[:N]`` as a continuous-time one (DPM-Solver ``'discrete'``).

    Keypoints ``τ_n = (n+1)/N`` carry ``log α = ½·Σ_{j≤n} log(1−β_j)``; in between it is linear
    (and extrapolated linearly outside). The tail whose half-log-SNR is below −5.1 is dropped
    (never the case for the 4.1 linear schedule). ``σ = √(1−α²)``, ``λ = log α − log σ``.
    """

    def __init__(self, betas: torch.Tensor):
        log_alphas = 0.5 * torch.log(1 - betas).cumsum(dim=0)
        lambdas = log_alphas - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_alphas))
        n_low = int(
            torch.searchsorted(torch.flip(lambdas, [0]), torch.tensor(-5.1, dtype=lambdas.dtype))
        )
        if n_low > 0:
            log_alphas = log_alphas[:-n_low]
        self.log_alpha_array = log_alphas
        self.N = log_alphas.shape[0]
        self.t_array = torch.linspace(0.0, 1.0, self.N + 1, device=betas.device, dtype=betas.dtype)[
            1:
        ]

    def log_alpha(self, tau: torch.Tensor) -> torch.Tensor:
        xp, yp = self.t_array.to(tau.device), self.log_alpha_array.to(tau.device)
        if self.N == 1:
            return yp[0].expand_as(tau)
        k = torch.searchsorted(xp, tau.reshape(-1)).clamp(1, self.N - 1).reshape(tau.shape)
        x0, x1, y0, y1 = xp[k - 1], xp[k], yp[k - 1], yp[k]
        return y0 + (tau - x0) * (y1 - y0) / (x1 - x0)

    def alpha_sigma_lambda(self, tau: torch.Tensor):
        la = self.log_alpha(tau)
        log_sigma = 0.5 * torch.log(1.0 - torch.exp(2.0 * la))
        return la, torch.exp(log_sigma), la - log_sigma

    def model_time(self, tau: torch.Tensor) -> torch.Tensor:
        """Continuous τ ∈ [1/N, 1] → the denoiser's (float) step ``(τ − 1/N)·N``."""
        return (tau - 1.0 / self.N) * self.N


def exp_integrator(x, s, t, sched: VPSchedule, model_s, data: bool, correction=None):
    """One exponential-integrator step from τ=s to τ=t (DPM-Solver-1 = DDIM when
    ``correction`` is None).

    ``data`` (x0 prediction, DPM-Solver++ / UniPC): ``σ_t/σ_s·x − α_t·(e^{−h}−1)·(m + c)``;
    noise prediction (DPM-Solver): ``α_t/α_s·x − σ_t·(e^{h}−1)·(m + c)``, with ``h = λ_t − λ_s``,
    ``m`` = ``model_s`` and ``c`` = ``correction`` (the higher-order term).
    """
    la_s, sig_s, lam_s = sched.alpha_sigma_lambda(s)
    la_t, sig_t, lam_t = sched.alpha_sigma_lambda(t)
    h = lam_t - lam_s
    m = model_s if correction is None else model_s + correction
    if data:
        return sig_t / sig_s * x - torch.exp(la_t) * torch.expm1(-h) * m
    return torch.exp(la_t - la_s) * x - sig_t * torch.expm1(h) * m


def _model_fn(eps: Eps, sched: VPSchedule, data: bool):
    def fn(x, tau):
        e = eps(x, sched.model_time(tau).expand(x.shape[0]))
        if not data:
            return e
        la, sig, _ = sched.alpha_sigma_lambda(tau)
        return (x - sig * e) / torch.exp(la)

    return fn


def _times(t: int, speedup: int, sched: VPSchedule):
    steps = t // speedup
    if steps < 2:
        raise ValueError(
            f"k_step {t} with speedup {speedup} gives {steps} solver step(s); the order-2 "
            "solvers need at least 2 (lower the speedup or raise k_step)"
        )
    return steps, torch.linspace(1.0, 1.0 / sched.N, steps + 1, dtype=sched.t_array.dtype)


def _ode_start(eps: Eps, x, buffers, t: int, speedup: int, data: bool):
    """Schedule on ``betas[:t]``, model function, step count, times, and the first evaluation."""
    sched = VPSchedule(buffers["betas"][:t])
    model = _model_fn(eps, sched, data)
    steps, times = _times(t, speedup, sched)
    times = times.to(x.device)
    return sched, model, steps, times, [times[0]], [model(x, times[0])]


def dpm_solver(eps: Eps, x, buffers, t: int, speedup: int, generator=None, data: bool = False):
    """Multistep DPM-Solver(-2) (``data`` = DPM-Solver++): the correction is
    ``½·(m_0 − m_1)/r``, ``r = (λ_prev − λ_prevprev)/(λ_t − λ_prev)``."""
    sched, model, steps, times, prev_t, prev_m = _ode_start(eps, x, buffers, t, speedup, data)
    for step in range(1, steps + 1):
        tau = times[step]
        order = 1 if step == 1 or (steps < 10 and step == steps) else 2
        corr = None
        if order == 2:
            lam = [sched.alpha_sigma_lambda(v)[2] for v in (prev_t[-2], prev_t[-1], tau)]
            r = (lam[1] - lam[0]) / (lam[2] - lam[1])
            corr = 0.5 * (prev_m[-1] - prev_m[-2]) / r
        x = exp_integrator(x, prev_t[-1], tau, sched, prev_m[-1], data, corr)
        prev_t = (prev_t + [tau])[-2:]
        if step < steps:
            prev_m = (prev_m + [model(x, tau)])[-2:]
    return x


def _unipc_weights(h_data: torch.Tensor, rks: list[torch.Tensor], order: int):
    """UniPC-bh2 coefficients: ``R[i, k] = r_k^i``, ``b_i = i!·φ_{i+1}(hh)/B(hh)`` for
    ``hh = −h``, ``B = e^{hh} − 1``. Returns ``(R, b)`` (order × order, order)."""
    hh = -h_data
    h_phi_1 = torch.expm1(hh)
    b_h = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    fact = 1
    r = torch.stack(list(rks) + [torch.ones_like(hh)])
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append(r ** (i - 1))
        b.append(h_phi_k * fact / b_h)
        fact *= i + 1
        h_phi_k = h_phi_k / hh - 1 / fact
    return torch.stack(rows), torch.stack(b)


def unipc(eps: Eps, x, buffers, t: int, speedup: int, generator=None):
    """Multistep UniPC-bh2, order 2, data prediction. Each step: predictor (DPM-Solver++-2 form
    with ρ = ½), then the model at the predicted point, then the corrector with ``R ρ = b``;
    the model value at the *predicted* point is reused for the next step."""
    sched, model, steps, times, prev_t, prev_m = _ode_start(eps, x, buffers, t, speedup, True)
    for step in range(1, steps + 1):
        tau = times[step]
        order = 1 if step == 1 or step == steps else 2
        use_corrector = step < steps
        lam0 = sched.alpha_sigma_lambda(prev_t[-1])[2]
        h = sched.alpha_sigma_lambda(tau)[2] - lam0
        d1 = rk = None
        if order == 2:
            rk = (sched.alpha_sigma_lambda(prev_t[-2])[2] - lam0) / h
            d1 = (prev_m[-2] - prev_m[-1]) / rk
        pred_corr = None if d1 is None else 0.5 * d1
        x_pred = exp_integrator(x, prev_t[-1], tau, sched, prev_m[-1], True, pred_corr)
        model_t = None
        if use_corrector:
            model_t = model(x_pred, tau)
            if order == 1:
                rho = [torch.tensor(0.5, dtype=h.dtype)]
            else:
                big_r, b = _unipc_weights(h, [rk], order)
                rho = list(torch.linalg.solve(big_r, b))
            corr = rho[-1] * (model_t - prev_m[-1])
            if d1 is not None:
                corr = corr + rho[0] * d1
            x = exp_integrator(x, prev_t[-1], tau, sched, prev_m[-1], True, corr)
        else:
            x = x_pred
        prev_t = (prev_t + [tau])[-2:]
        if step < steps:
            prev_m = (prev_m + [model_t if model_t is not None else model(x, tau)])[-2:]
    return x


def _dpm_pp(eps, x, buffers, t, speedup, generator=None):
    return dpm_solver(eps, x, buffers, t, speedup, generator, data=True)


SAMPLERS: dict[str, Callable] = {
    "ddim": ddim,
    "pndm": pndm,
    "dpm-solver": dpm_solver,
    "dpm-solver++": _dpm_pp,
    "unipc": unipc,
}


def sample(method: str | None, eps: Eps, x, buffers, t: int, speedup: int, generator=None):
    """Run ``method`` (a :data:`SAMPLERS` name; ancestral when ``speedup <= 1`` or None)."""
    if method is None or speedup <= 1:
        return ancestral(eps, x, buffers, t, 1, generator)
    if method not in SAMPLERS:
        raise ValueError(f"unknown diffusion method {method!r}; expected one of {sorted(SAMPLERS)}")
    return SAMPLERS[method](eps, x, buffers, t, speedup, generator)
