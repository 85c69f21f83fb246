"""Each sampler against an independent, slow float64 computation of the same update rule
(sovits-4.1.md §13) on a tiny analytic denoiser, plus the step / time semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from diffusion.gaussian import _schedules
from diffusion.samplers import SAMPLERS, VPSchedule, sample

T_MAX = 1000
SHAPE = (2, 1, 6, 5)


def _buffers():
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in _schedules(T_MAX, 0.02).items()}


class TinyDenoiser:
    """ε̂(x, t) = tanh(W·x)·(0.5 + t/200) + 0.1·sin(t/7): smooth, t-dependent, records calls."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.w = torch.randn(6, 6, generator=g, dtype=torch.float64) / 3
        self.times: list[float] = []

    def __call__(self, x, t):
        self.times.append(float(t[0]))
        t = t.to(torch.float64).view(-1, 1, 1, 1)
        return torch.tanh(torch.einsum("ij,bcjt->bcit", self.w, x)) * (
            0.5 + t / 200
        ) + 0.1 * torch.sin(t / 7)

    def np(self, x, t):
        return np.tanh(np.einsum("ij,bcjt->bcit", self.w.numpy(), x)) * (
            0.5 + t / 200
        ) + 0.1 * np.sin(t / 7)


def _x0():
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _ac():
    betas = np.linspace(1e-4, 0.02, T_MAX)
    return betas, np.cumprod(1 - betas)


# ---------------------------------------------------------------- slow references (numpy) ----
def ref_ancestral(x, t, seed):
    betas, ac = _ac()
    ac_prev = np.concatenate([[1.0], ac[:-1]])
    g = torch.Generator().manual_seed(seed)
    net = TinyDenoiser()
    for i in range(t - 1, -1, -1):
        e = net.np(x, i)
        x0 = np.clip(x / np.sqrt(ac[i]) - np.sqrt(1 / ac[i] - 1) * e, -1, 1)
        mean = (betas[i] * np.sqrt(ac_prev[i]) / (1 - ac[i]) * x0
                + (1 - ac_prev[i]) * np.sqrt(1 - betas[i]) / (1 - ac[i]) * x)  # fmt: skip
        var = betas[i] * (1 - ac_prev[i]) / (1 - ac[i])
        z = torch.randn(SHAPE, generator=g, dtype=torch.float64).numpy()
        x = mean + (np.sqrt(var) * z if i > 0 else 0)
    return x


def _plms_transfer(x, e, a_t, a_prev):
    """The reference's PLMS ``get_x_pred`` form (algebraically DDIM)."""
    dx = (a_prev - a_t) * (x / (np.sqrt(a_t) * (np.sqrt(a_t) + np.sqrt(a_prev)))
                           - e / (np.sqrt(a_t) * (np.sqrt((1 - a_prev) * a_t) + np.sqrt((1 - a_t) * a_prev))))  # fmt: skip
    return x + dx


def ref_ddim(x, t, sp):
    _, ac = _ac()
    net = TinyDenoiser()
    for i in range(t - 1 - (t - 1) % sp, -1, -sp):
        a, ap = ac[i], ac[max(i - sp, 0)]
        x = np.sqrt(ap) * (
            x / np.sqrt(a) + (np.sqrt((1 - ap) / ap) - np.sqrt((1 - a) / a)) * net.np(x, i)
        )
    return x


def ref_pndm(x, t, sp):
    _, ac = _ac()
    net = TinyDenoiser()
    hist = []
    for i in range(t - 1 - (t - 1) % sp, -1, -sp):
        p = max(i - sp, 0)
        e = net.np(x, i)
        if len(hist) == 0:
            e2 = (e + net.np(_plms_transfer(x, e, ac[i], ac[p]), p)) / 2
        elif len(hist) == 1:
            e2 = (3 * e - hist[-1]) / 2
        elif len(hist) == 2:
            e2 = (23 * e - 16 * hist[-1] + 5 * hist[-2]) / 12
        else:
            e2 = (55 * e - 59 * hist[-1] + 37 * hist[-2] - 9 * hist[-3]) / 24
        x = _plms_transfer(x, e2, ac[i], ac[p])
        hist.append(e)
    return x


def _np_schedule(t):
    betas, _ = _ac()
    log_a = 0.5 * np.cumsum(np.log(1 - betas[:t]))
    tau_k = np.arange(1, t + 1) / t

    def la(tau):
        return float(np.interp(tau, tau_k, log_a))

    def lam(tau):
        return la(tau) - 0.5 * np.log(1 - np.exp(2 * la(tau)))

    def sig(tau):
        return np.sqrt(1 - np.exp(2 * la(tau)))

    return la, lam, sig


def ref_dpm(x, t, sp, data):
    la, lam, sig = _np_schedule(t)
    net = TinyDenoiser()
    steps = t // sp
    taus = np.linspace(1.0, 1.0 / t, steps + 1)

    def model(x, tau):
        e = net.np(x, (tau - 1 / t) * t)
        return (x - sig(tau) * e) / np.exp(la(tau)) if data else e

    ms, ts = [model(x, taus[0])], [taus[0]]
    for j in range(1, steps + 1):
        s, tt = ts[-1], taus[j]
        h = lam(tt) - lam(s)
        lower = j == 1 or (steps < 10 and j == steps)
        d1 = 0 if lower else (ms[-1] - ms[-2]) / ((lam(s) - lam(ts[-2])) / h)
        if data:
            x = sig(tt) / sig(s) * x - np.exp(la(tt)) * (np.exp(-h) - 1) * (ms[-1] + 0.5 * d1)
        else:
            x = np.exp(la(tt) - la(s)) * x - sig(tt) * (np.exp(h) - 1) * (ms[-1] + 0.5 * d1)
        ts.append(tt)
        if j < steps:
            ms.append(model(x, tt))
    return x


def _phi(k, z):
    """φ_k(z) = Σ_n z^n/(n+k)! (series; φ_1 = (e^z−1)/z)."""
    return sum(z**n / math.factorial(n + k) for n in range(40))


def ref_unipc(x, t, sp):
    la, lam, sig = _np_schedule(t)
    net = TinyDenoiser()
    steps = t // sp
    taus = np.linspace(1.0, 1.0 / t, steps + 1)

    def model(x, tau):
        return (x - sig(tau) * net.np(x, (tau - 1 / t) * t)) / np.exp(la(tau))

    ms, ts = [model(x, taus[0])], [taus[0]]
    for j in range(1, steps + 1):
        s, tt = ts[-1], taus[j]
        hh = -(lam(tt) - lam(s))
        bh = np.expm1(hh)
        a_t = np.exp(la(tt))
        base = sig(tt) / sig(s) * x - a_t * np.expm1(hh) * ms[-1]
        order = 1 if j in (1, steps) else 2
        d1 = None
        if order == 2:
            r = (lam(ts[-2]) - lam(s)) / -hh
            d1 = (ms[-2] - ms[-1]) / r
        xp = base - a_t * bh * (0.5 * d1 if d1 is not None else 0)
        mt = None
        if j < steps:
            mt = model(xp, tt)
            if order == 1:
                rho = [0.5]
            else:
                rk = np.array([r, 1.0])
                big_r = np.stack([rk**0, rk**1])
                b = np.array([hh * _phi(i + 1, hh) * math.factorial(i) / bh for i in (1, 2)])
                rho = np.linalg.solve(big_r, b)
            corr = rho[-1] * (mt - ms[-1]) + (rho[0] * d1 if d1 is not None else 0)
            x = base - a_t * bh * corr
        else:
            x = xp
        ts.append(tt)
        if j < steps:
            ms.append(mt)
    return x


# ------------------------------------------------------------------------------- the tests ----
def _start(t):
    _, ac = _ac()
    return torch.tensor(np.sqrt(ac[t - 1]) * 0.3 + np.sqrt(1 - ac[t - 1]) * _x0().numpy())


@pytest.mark.parametrize("t,sp", [(100, 10), (40, 7), (30, 10)])
@pytest.mark.parametrize("method", ["ddim", "pndm", "dpm-solver", "dpm-solver++", "unipc"])
def test_sampler_matches_slow_reference(method, t, sp):
    x = _start(t)
    got = sample(method, TinyDenoiser(), x.clone(), _buffers(), t, sp).numpy()
    ref = {"ddim": lambda: ref_ddim(x.numpy(), t, sp), "pndm": lambda: ref_pndm(x.numpy(), t, sp),
           "dpm-solver": lambda: ref_dpm(x.numpy(), t, sp, False),
           "dpm-solver++": lambda: ref_dpm(x.numpy(), t, sp, True),
           "unipc": lambda: ref_unipc(x.numpy(), t, sp)}[method]()  # fmt: skip
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("speedup", [1, 0])
def test_ancestral_matches_slow_reference(speedup):
    t = 20
    x = _start(t)
    g = torch.Generator().manual_seed(5)
    got = sample("dpm-solver++", TinyDenoiser(), x.clone(), _buffers(), t, speedup, g).numpy()
    np.testing.assert_allclose(got, ref_ancestral(x.numpy(), t, 5), rtol=1e-9, atol=1e-9)


def test_step_semantics():
    """Evaluations and model times for k_step 100 / speedup 10 (N = t mapping)."""
    buf = _buffers()
    x = _start(100)
    calls = {}
    for m in SAMPLERS:
        net = TinyDenoiser()
        sample(m, net, x.clone(), buf, 100, 10)
        calls[m] = net.times
    assert calls["ddim"] == [90.0 - 10 * k for k in range(10)]
    assert calls["pndm"][:3] == [90.0, 80.0, 80.0] and len(calls["pndm"]) == 11
    expect = [99 - 9.9 * j for j in range(10)]
    for m in ("dpm-solver", "dpm-solver++"):
        np.testing.assert_allclose(calls[m], expect, atol=1e-9)
    # UniPC: 1 + (corrector evaluations on steps 1..9) = 10 evaluations, the same times
    np.testing.assert_allclose(calls["unipc"], expect, atol=1e-9)
    net = TinyDenoiser()
    sample(None, net, x.clone(), buf, 100, 10)
    assert net.times == [float(i) for i in range(99, -1, -1)]


def test_schedule_interpolation_and_errors():
    s = VPSchedule(_buffers()["betas"][:50])
    la, lam, _ = _np_schedule(50)
    for tau in (1.0, 0.02, 0.5, 0.731):
        tt = torch.tensor(tau, dtype=torch.float64)
        assert abs(float(s.log_alpha(tt)) - la(tau)) < 1e-12
        assert abs(float(s.alpha_sigma_lambda(tt)[2]) - lam(tau)) < 1e-9
    assert s.N == 50 and float(s.model_time(torch.tensor(1.0))) == pytest.approx(49)
    with pytest.raises(ValueError, match="unknown diffusion method"):
        sample("euler", TinyDenoiser(), _start(10), _buffers(), 10, 2)
    with pytest.raises(ValueError, match="at least 2"):
        sample("unipc", TinyDenoiser(), _start(10), _buffers(), 10, 10)
