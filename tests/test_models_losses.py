"""modules/losses.py against hand calculations (sovits-4.1.md §11)."""

from __future__ import annotations

import math

import pytest
import torch

from modules.losses import discriminator_loss, feature_loss, generator_loss, kl_loss


def test_feature_loss_is_twice_the_summed_l1_means():
    fmap_r = [
        [torch.tensor([1.0, 2.0]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])],
        [torch.tensor([[[3.0]]])],
    ]
    fmap_g = [
        [torch.tensor([0.0, 4.0]), torch.tensor([[1.0, 0.0], [1.0, 3.0]])],
        [torch.tensor([[[2.5]]])],
    ]
    # means: |1-0|,|2-4| → 1.5 ; |0-1|,0,0,|1-3| → 0.75 ; 0.5   → sum 2.75, ×2
    loss = feature_loss(fmap_r, fmap_g)
    assert loss.item() == pytest.approx(5.5)


def test_feature_loss_does_not_backprop_into_real_features():
    r = torch.tensor([1.0, 2.0], requires_grad=True)
    g = torch.tensor([0.0, 4.0], requires_grad=True)
    feature_loss([[r]], [[g]]).backward()
    assert r.grad is None
    # d/dg 2·mean|r−g| = 2·sign(g−r)/2
    assert torch.allclose(g.grad, torch.tensor([-1.0, 1.0]))


def test_discriminator_loss():
    real = [torch.tensor([1.0, 0.5]), torch.tensor([[0.0, 2.0]])]
    fake = [torch.tensor([0.0, 1.0]), torch.tensor([[0.5, -0.5]])]
    loss, r_losses, g_losses = discriminator_loss(real, fake)
    # D1: mean((1-1)², (1-.5)²) = .125 ; mean(0², 1²) = .5
    # D2: mean((1-0)², (1-2)²) = 1     ; mean(.25, .25) = .25
    assert r_losses == pytest.approx([0.125, 1.0])
    assert g_losses == pytest.approx([0.5, 0.25])
    assert all(isinstance(v, float) for v in r_losses + g_losses)
    assert loss.item() == pytest.approx(0.125 + 0.5 + 1.0 + 0.25)


def test_generator_loss():
    outs = [torch.tensor([0.0, 1.0]), torch.tensor([[2.0]])]
    loss, gen_losses = generator_loss(outs)
    assert [v.item() for v in gen_losses] == pytest.approx([0.5, 1.0])
    assert all(isinstance(v, torch.Tensor) for v in gen_losses)
    assert loss.item() == pytest.approx(1.5)


def test_kl_loss_hand_calculation():
    # two frames, the second masked out; two channels
    z_p = torch.tensor([[[1.0, 9.0], [0.5, 9.0]]])
    logs_q = torch.tensor([[[0.2, 9.0], [0.0, 9.0]]])
    m_p = torch.tensor([[[0.0, 9.0], [1.5, 9.0]]])
    logs_p = torch.tensor([[[0.5, 9.0], [-0.25, 9.0]]])
    mask = torch.tensor([[[1.0, 0.0]]])

    def kl(z, lq, m, lp):
        return lp - lq - 0.5 + 0.5 * (z - m) ** 2 * math.exp(-2 * lp)

    expected = (kl(1.0, 0.2, 0.0, 0.5) + kl(0.5, 0.0, 1.5, -0.25)) / 1.0  # Σ mask = 1 (frames)
    got = kl_loss(z_p, logs_q, m_p, logs_p, mask)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_kl_loss_divides_by_mask_sum_not_element_count():
    z = torch.zeros(1, 4, 3)
    ones = torch.ones(1, 1, 3)
    logs_p = torch.full((1, 4, 3), 1.0)
    # every element: 1 - 0 - 0.5 + 0 = 0.5 ; Σ over 4·3 elements = 6 ; / Σ mask (3) = 2
    assert kl_loss(z, torch.zeros_like(z), z, logs_p, ones).item() == pytest.approx(2.0)


def test_losses_compute_in_float32():
    half = [torch.tensor([0.25, 0.75], dtype=torch.bfloat16)]
    loss, _ = generator_loss(half)
    assert loss.dtype == torch.float32
    loss, _, _ = discriminator_loss(half, half)
    assert loss.dtype == torch.float32
    assert feature_loss([half], [half]).dtype == torch.float32
    x = torch.zeros(1, 2, 2, dtype=torch.bfloat16)
    assert kl_loss(x, x, x, x, torch.ones(1, 1, 2)).dtype == torch.float32
