"""``preprocess_hubert_f0.py``: per-utterance features for training (sovits-4.1.md §2.3, §4).

For every ``in_dir/<speaker>/*.wav`` it writes, beside the wav, the files listed in
:mod:`common.features`: units (``.soft.pt``), f0 (``.f0.npy``), the linear spectrogram
(``.spec.pt``), the volume (``.vol.npy``, with ``--use_diff`` or a config with
``vol_embedding``) and, with ``--use_diff``, the diffusion mels (``.mel.npy``, ``.aug_mel.npy``,
``.aug_keyshift.npy``, ``.aug_vol.npy``). No file is pickled.

A wav is complete when all of its outputs exist; each output is written atomically, so a run that
is killed and started again redoes only what is missing. Reference-format (pickled) f0 and
aug_mel files are recomputed, never unpickled. Workers use the ``spawn`` start method.

``--precision bf16`` runs the speech encoder in bf16 (``set_precision``; units saved as float32) and
a neural f0 predictor's network under bf16 autocast (rmvpe: the U-Net; its BiGRU, the mel and the
decoding stay fp32); the default fp32 gives 4.1's units and f0. Long files stay in bounded memory (:mod:`preprocess.long_inputs`:
files longer than ``WHOLE_S`` go through the encoder in chunks of ``CHUNK_S`` with ``CONTEXT_S`` of
context, last, after the 44.1 kHz wav is released; blocked spectrogram; rmvpe chunks itself;
freed memory is returned to the OS after each file, :mod:`common.memory`).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch

from common import features as ff
from common.atomic import remove_stale_temporaries, save_npy, torch_save
from common.audio import load_audio, resample
from common.errors import InputError, UsageError
from common.hparams import load_config
from common.locking import folder_lock
from common.memory import release_memory
from modules.f0 import F0_PREDICTORS
from modules.f0.base import FrameModelPredictor
from preprocess.batch import BatchReport, run_batch
from preprocess.long_inputs import encode_chunked, spectrogram_blocked

HOP = 512
SR = 44100
# the speech encoder on long files (long_inputs.py): up to WHOLE_S in one pass (as 4.1), longer
# ones in CHUNK_S chunks with CONTEXT_S of context each side (peak memory: 20 s windows)
CHUNK_S, CONTEXT_S, WHOLE_S = 10.0, 5.0, 40.0
LONG_S = 60.0  # files longer than this hand freed memory back to the OS after their big steps

_state: dict = {}


def required_outputs(wav_path: str, use_diff: bool, use_vol: bool) -> list[str]:
    out = [ff.soft_path(wav_path), ff.f0_path(wav_path), ff.spec_path(wav_path)]
    if use_diff or use_vol:
        out.append(ff.vol_path(wav_path))
    if use_diff:
        out += [ff.mel_path(wav_path), ff.aug_mel_path(wav_path), ff.aug_keyshift_path(wav_path),
                ff.aug_vol_path(wav_path)]  # fmt: skip
    return out


def _wav_samples(wav_path: str) -> int:
    """Samples of ``wav_path`` at 44.1 kHz, from its header (no decoding)."""
    import soundfile as sf

    info = sf.info(wav_path)
    return info.frames if info.samplerate == SR else int(info.frames * SR / info.samplerate)


def _init_worker(job: dict, ranks) -> None:
    """Per-worker set-up: threads, device, speech encoder, f0 predictor, mel extractor."""
    rank = ranks.get() if ranks is not None else 0
    torch.set_num_threads(job["threads"])
    _state.clear()
    try:
        _load_models(job, rank)
    except Exception as e:  # noqa: BLE001 - reported once per file instead of a broken pool
        _state["init_error"] = str(e)


def _load_models(job: dict, rank: int) -> None:
    from modules.f0 import get_f0_predictor
    from modules.mel_processing import NsfMel, VolumeExtractor
    from vencoder import get_speech_encoder

    device = job["device"]
    if device.startswith("cuda") and ":" not in device and torch.cuda.device_count() > 0:
        device = f"cuda:{rank % torch.cuda.device_count()}"
    _state.update(job)
    _state["device"] = device
    _state["encoder"] = get_speech_encoder(job["speech_encoder"], device=device)
    _state["encoder"].set_precision(job.get("precision", "fp32"))
    _state["f0"] = get_f0_predictor(job["f0_predictor"], hop_length=HOP, sampling_rate=SR,
                                    device=device, threshold=0.05,
                                    precision=job.get("precision", "fp32"))  # fmt: skip
    _state["volume"] = VolumeExtractor(HOP)
    if job["use_diff"]:
        cfg = job.get("vocoder_config")
        _state["mel"] = NsfMel.from_config(cfg) if cfg else NsfMel()


def process_one(wav_path: str) -> tuple[str, str | None]:
    """Compute the missing outputs of one wav. Returns ``(status, reason)``."""
    s = _state
    if "init_error" in s:
        return "failed", s["init_error"]
    try:
        n_samples = _wav_samples(wav_path)
    except Exception:  # noqa: BLE001 - load_audio below gives the reason
        n_samples = 0
    todo = []
    for p in required_outputs(wav_path, s["use_diff"], s["use_vol"]):
        problem = ff.feature_problem(p, n_samples, s.get("ssl_dim"))
        if problem is not None:
            todo.append(p)
            if problem != "missing":
                print(f"{p}: {problem}; recomputing it", file=sys.stderr, flush=True)
    if not todo:
        return "skipped", None
    wav, _ = load_audio(wav_path, sr=SR)
    if len(wav) < 2 * HOP:
        return "failed", f"too short ({len(wav)} samples)"
    n_frames = len(wav) // HOP
    wav_t = torch.from_numpy(wav)
    long_file = len(wav) > LONG_S * SR

    if ff.f0_path(wav_path) in todo:
        # the frame models (rmvpe, fcpe, crepe) read float32: skip a float64 copy of a long file
        x = wav if isinstance(s["f0"], FrameModelPredictor) else wav.astype(np.float64)
        f0, uv = s["f0"].compute_f0_uv(x, p_len=n_frames)
        ff.save_f0(ff.f0_path(wav_path), f0, uv)
        del x

    if ff.spec_path(wav_path) in todo:
        spec = spectrogram_blocked(wav_t)
        torch_save(spec.float().contiguous(), ff.spec_path(wav_path))
        del spec

    if ff.vol_path(wav_path) in todo:
        save_npy(ff.vol_path(wav_path), s["volume"].extract(wav_t).numpy().astype(np.float32))

    if s["use_diff"]:
        write_diffusion_features(wav_path, wav, s["mel"], s["volume"], todo)

    # the units last, with the 44.1 kHz wav released: the encoder's activations are the largest
    # peak of a long file (a 20-minute file: 212 MB of wav less at that peak)
    if ff.soft_path(wav_path) in todo:
        wav16k = torch.from_numpy(resample(wav, SR, 16000)).to(s["device"])
        del wav, wav_t
        if long_file:
            release_memory()
        with torch.inference_mode():  # bf16: the encoder's own set_precision (at load)
            units = encode_chunked(s["encoder"], wav16k, CHUNK_S, CONTEXT_S, WHOLE_S)
        del wav16k
        torch_save(units.detach().float().cpu().contiguous(), ff.soft_path(wav_path))
        del units
    if long_file:
        release_memory()
    return "done", None


def write_diffusion_features(wav_path: str, wav: np.ndarray, mel_ex, volume, todo) -> None:
    """``X.mel.npy`` and the augmentation files (``aug_mel``, ``aug_keyshift``, ``aug_vol``) of
    the 44.1 kHz ``wav``, those listed in ``todo``. The volume shift ``10**s``,
    ``s ~ U(−1, min(1, log10(1/(max|x|+1e-5))))``, and key shift ``U(−5, 5)`` are drawn from a
    generator seeded by the path, so a resumed run writes the same augmentation."""
    wav_t = torch.from_numpy(wav)
    if ff.mel_path(wav_path) in todo:
        mel = mel_ex.extract(wav_t[None])[0]
        save_npy(ff.mel_path(wav_path), mel.numpy().astype(np.float32))
    aug = {ff.aug_mel_path(wav_path), ff.aug_keyshift_path(wav_path), ff.aug_vol_path(wav_path)}
    if aug & set(todo):
        seed = int.from_bytes(hashlib.sha1(wav_path.encode()).digest()[:4], "little")
        rng = np.random.default_rng(seed)
        max_shift = min(1.0, float(np.log10(1.0 / (np.abs(wav).max() + 1e-5))))
        log10_vol_shift = rng.uniform(-1.0, max_shift)
        keyshift = float(rng.uniform(-5.0, 5.0))
        shifted = wav_t * (10**log10_vol_shift)
        aug_mel = mel_ex.extract(shifted[None], keyshift=keyshift)[0]
        save_npy(ff.aug_vol_path(wav_path), volume.extract(shifted).numpy().astype(np.float32))
        save_npy(ff.aug_keyshift_path(wav_path), np.array([keyshift], np.float32))
        save_npy(ff.aug_mel_path(wav_path), aug_mel.numpy().astype(np.float32))


SHIPPED_ENCODERS = "whisper-ppg-ct2 (English) or whisper-base-ct2 (multilingual)"
"""Speech encoders whose weights ship with the install (suggested when another one's are missing)."""


def require_models(speech_encoder: str, f0_predictor: str) -> None:
    """Before any work: the speech encoder's and the f0 predictor's files exist, else one line
    naming the file, where it comes from and this script's way around it."""
    from modules.f0 import SHIPPED_F0, F0ModelMissing, require_f0_model
    from vencoder import ENCODERS, MissingCheckpointError, encoder_path
    from vencoder.base import require_file

    try:
        require_file(encoder_path(speech_encoder), speech_encoder, ENCODERS[speech_encoder].source)
    except MissingCheckpointError as e:
        raise MissingCheckpointError(
            str(e), f"or use an encoder that ships with the install: run "
            f"preprocess_flist_config.py --speech_encoder {SHIPPED_ENCODERS}, then this step again"
        ) from None  # fmt: skip
    try:
        require_f0_model(f0_predictor)
    except F0ModelMissing as e:
        raise F0ModelMissing(
            str(e), f"or pass --f0_predictor {SHIPPED_F0}: it ships with the install"
        ) from None


def extract_features(
    in_dir: str = "dataset/44k",
    config_path: str = "configs/config.json",
    diff_config_path: str = "configs/diffusion.yaml",
    f0_predictor: str = "rmvpe",
    use_diff: bool = False,
    device: str | None = None,
    num_processes: int = 1,
    precision: str = "fp32",
) -> BatchReport:
    hps = load_config(config_path, infer=True, purpose="features")
    speech_encoder = hps.model.speech_encoder or "vec768l12"
    use_vol = bool(hps.model.vol_embedding)
    vocoder_config = None
    if use_diff:
        import json

        from common.config_check import FEATURES, load_diffusion_config

        dcfg = load_diffusion_config(diff_config_path, FEATURES, hps.to_dict())
        ckpt = (dcfg.get("vocoder") or {}).get("ckpt", "pretrain/nsf_hifigan/model")
        cfg_file = Path(ckpt).parent / "config.json"
        if cfg_file.is_file():
            vocoder_config = json.loads(cfg_file.read_text())
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    require_models(speech_encoder, f0_predictor)
    files = sorted(glob.glob(os.path.join(in_dir, "*", "*.wav")))
    if not files:
        raise InputError(f"{in_dir}: no wav files in {in_dir}/<speaker>/", "run resample.py first")
    n = num_processes if num_processes > 0 else (os.cpu_count() or 1)
    n = max(1, min(n, len(files)))
    job = {
        "speech_encoder": speech_encoder, "f0_predictor": f0_predictor, "use_diff": use_diff,
        "use_vol": use_vol, "device": device, "vocoder_config": vocoder_config,
        "threads": max(1, (os.cpu_count() or 1) // n),
        "ssl_dim": hps.model.ssl_dim, "precision": precision,
    }  # fmt: skip
    ranks = None
    if n > 1:
        import multiprocessing as mp

        ranks = mp.get_context("spawn").Manager().Queue()
        for r in range(n):
            ranks.put(r)
    print(f"features: encoder {speech_encoder} ({precision}), f0 {f0_predictor}, device {device}, "
          f"{n} process(es), {len(files)} files")  # fmt: skip
    with folder_lock(in_dir, "features"):
        remove_stale_temporaries(in_dir, recursive=True)
        return run_batch(process_one, files, n, "features", _init_worker, (job, ranks))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Extract units, f0, spectrograms (and diffusion mels).")
    p.add_argument(
        "-d", "--device", type=str, default=None, help="cpu, cuda, cuda:N (default: auto)"
    )
    p.add_argument("--in_dir", type=str, default="dataset/44k", help="path to input dir")
    p.add_argument("--use_diff", action="store_true", help="Whether to use the diffusion model")
    p.add_argument("--f0_predictor", type=str, default="rmvpe",
                   help="Select F0 predictor, can select crepe,pm,dio,harvest,rmvpe,fcpe|default: rmvpe")  # fmt: skip
    p.add_argument("--num_processes", type=int, default=1,
                   help="You are advised to set the number of processes to the same as the number of CPU cores")  # fmt: skip
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="arithmetic of the speech encoder and a neural f0 predictor (rmvpe, "
                        "fcpe, crepe): fp32 (default; the features of so-vits-svc 4.1) or bf16 "
                        "(faster on CPUs with AVX-512 BF16 / AMX; units within about 1%% of fp32)")  # fmt: skip
    p.add_argument("-c", "--config", type=str, default="configs/config.json", help="so-vits config")
    p.add_argument(
        "--diff_config", type=str, default="configs/diffusion.yaml", help="diffusion config"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.f0_predictor.strip().lower() not in F0_PREDICTORS:
        raise UsageError(f"--f0_predictor {args.f0_predictor}: unknown f0 predictor",
                         f"choose one of {', '.join(F0_PREDICTORS)}")  # fmt: skip
    report = extract_features(args.in_dir, args.config, args.diff_config, args.f0_predictor,
                              args.use_diff, args.device, args.num_processes,
                              args.precision)  # fmt: skip
    print(report.summary("features"))
    return report.exit_code
