"""The straightforward so-vits-svc 4.1 training step, exactly as sovits-4.1.md §11 describes it.

It is the yardstick for :func:`training.trainer.train_step` (the speed bench and the loss
equality test): the same batch, models and losses, in the reference order and with no speed
tricks (weight norm kept, autocast only when ``train.fp16_run``, the mel of ``y_hat`` computed
inside the autocast region, the discriminator run on the real and generated halves in both
updates with every parameter's gradient computed, the total gradient norm measured parameter by
parameter with ``.item()`` as 4.1's ``clip_grad_value_(params, None)`` does, torch-default
optimizers).

Per step (§11): ``mel = spec_to_mel(spec)``; G forward; ``y_mel`` = the mel sliced at
``ids_slice`` (``segment_size // hop`` frames), ``y_hat_mel = mel_spectrogram(y_hat)``, ``y``
sliced at ``ids_slice · hop``; D update on ``discriminator_loss(D(y), D(ŷ.detach()))``; G update
on ``generator_loss + feature_loss + c_mel · L1(y_mel, y_hat_mel) + c_kl · KL (+ MSE(pred_lf0,
lf0) with automatic f0 prediction)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_train_step(hps, net_g, net_d, optim_g, optim_d, scaler, c, f0, spec, y, g,
                         lengths, uv, volume=None) -> dict:  # fmt: skip
    """One 4.1 step. Tensors as for :func:`training.trainer.train_step`: c ``[B, ssl_dim, T]``,
    f0/uv ``[B, T]``, spec ``[B, n_fft//2+1, T]``, y ``[B, 1, T·hop]``, g ``[B, 1]``, lengths
    ``[B]``, volume ``[B, T]`` or None. ``scaler`` is a ``torch.amp.GradScaler`` (enabled with
    ``fp16_run``, as in 4.1). Returns the losses (float) and the two grad norms."""
    from modules import commons
    from modules.losses import discriminator_loss, feature_loss, generator_loss, kl_loss
    from modules.mel_processing import mel_spectrogram_torch, spec_to_mel_torch

    t, d = hps.train, hps.data
    hop = int(d.hop_length)
    fp16_run = bool(t.get("fp16_run", False))
    half_type = torch.bfloat16 if t.get("half_type", "fp16") == "bf16" else torch.float16
    device_type = y.device.type
    mel_kw = dict(n_fft=d.filter_length, num_mels=d.n_mel_channels, sampling_rate=d.sampling_rate,
                  fmin=d.mel_fmin, fmax=d.mel_fmax)  # fmt: skip

    mel = spec_to_mel_torch(spec, **mel_kw)
    with torch.autocast(device_type=device_type, enabled=fp16_run, dtype=half_type):
        (y_hat, ids_slice, z_mask, (z, z_p, m_p, logs_p, m_q, logs_q), pred_lf0, norm_lf0,
         lf0) = net_g(c, f0, uv, spec, g=g, c_lengths=lengths, spec_lengths=lengths,
                      vol=volume)  # fmt: skip
        y_mel = commons.slice_segments(mel, ids_slice, int(t.segment_size) // hop)
        y_hat_mel = mel_spectrogram_torch(y_hat.squeeze(1), hop_size=hop, win_size=d.win_length,
                                          center=False, **mel_kw)  # fmt: skip
        y = commons.slice_segments(y, ids_slice * hop, int(t.segment_size))

        # discriminator
        y_d_hat_r, y_d_hat_g, _, _ = net_d(y, y_hat.detach())
        with torch.autocast(device_type=device_type, enabled=False):
            loss_disc, _, _ = discriminator_loss(y_d_hat_r, y_d_hat_g)
            loss_disc_all = loss_disc
    optim_d.zero_grad()
    scaler.scale(loss_disc_all).backward()
    scaler.unscale_(optim_d)
    grad_norm_d = commons.clip_grad_value_(net_d.parameters(), None)
    scaler.step(optim_d)

    with torch.autocast(device_type=device_type, enabled=fp16_run, dtype=half_type):
        # generator
        y_d_hat_r, y_d_hat_g, fmap_r, fmap_g = net_d(y, y_hat)
        with torch.autocast(device_type=device_type, enabled=False):
            loss_mel = F.l1_loss(y_mel, y_hat_mel.float()) * t.c_mel
            loss_kl = kl_loss(z_p, logs_q, m_p, logs_p, z_mask) * t.c_kl
            loss_fm = feature_loss(fmap_r, fmap_g)
            loss_gen, _ = generator_loss(y_d_hat_g)
            if net_g.use_automatic_f0_prediction:
                loss_lf0 = F.mse_loss(pred_lf0, lf0)
            else:
                loss_lf0 = torch.zeros(())
            loss_gen_all = loss_gen + loss_fm + loss_mel + loss_kl + loss_lf0
    optim_g.zero_grad()
    scaler.scale(loss_gen_all).backward()
    scaler.unscale_(optim_g)
    grad_norm_g = commons.clip_grad_value_(net_g.parameters(), None)
    scaler.step(optim_g)
    scaler.update()
    losses = {"loss_disc": loss_disc, "loss_gen": loss_gen, "loss_fm": loss_fm,
              "loss_mel": loss_mel, "loss_kl": loss_kl, "loss_lf0": loss_lf0,
              "loss_gen_all": loss_gen_all}  # fmt: skip
    out = {k: float(v.detach()) for k, v in losses.items()}
    out.update(grad_norm_g=float(grad_norm_g), grad_norm_d=float(grad_norm_d))
    return out
