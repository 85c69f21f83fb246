"""Motion sidecar: ARKit face tracks (Live Link Face's 61 values) learnt from the voice model's latent z.

Flow: ``record.py`` / ``import_llf.py`` → takes (:mod:`motion.take`) → ``prepare_visemes.py``
(z from the posterior encoder, targets on the z grid, lag per take) → ``train_visemes.py`` →
``inference_main.py --visemes`` / ``wav_to_visemes.py`` → ``svc2ue.py`` (Live Link to Unreal).
"""
