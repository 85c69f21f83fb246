"""One loaded voice shared by the web UI and the HTTP APIs, and the conversion options.

    service = VoiceService(root=".")
    service.load("logs/44k/G_800.pth", "logs/44k/config.json")
    result = service.convert("raw/song.wav", ConvertOptions(speaker="alice"), "song.wav")
    # result.path == results/song.wav_0key_alice_sovits_pm.flac (inference_main.py's name)

:class:`ConvertOptions` holds every conversion setting of the 4.1 web UI (sovits-4.1.md §17) with
**inference_main.py's defaults** (§2.8), so the UI, the APIs and the CLI give the same file for the
same input. The one place 4.1's web UI differed, the loudness envelope mix (0 in the UI, 1 in the
CLI), uses the CLI's 1; the output format defaults to the CLI's ``flac``.

All model access goes through one lock: requests are converted one at a time, in arrival order
(the lock is fair enough for a single-user tool; a model is never swapped mid-conversion).
Loading builds the new voice first and swaps it in only when it is ready, so a failed load keeps
the voice that was loaded (both are in memory for that moment). An input's length is read from its
header (``soundfile.info``) and refused above ``max_seconds`` before any sample is decoded.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from webui import paths
from webui.errors import (  # noqa: F401 (re-exported: the servers import them from here)
    ServiceError,
    check_server_flags,
    message,
    user_errors,
    validation_message,
)

F0_PREDICTORS = ("pm", "dio", "harvest", "crepe", "rmvpe", "fcpe")
MIN_INPUT_RATE, MAX_INPUT_RATE = 1000, 384_000  # Hz: other sample rates in a header are refused
MAX_INPUT_CHANNELS = 64
OUTPUT_FORMATS = ("flac", "wav", "mp3", "ogg")


class ConvertOptions(BaseModel):
    """Every conversion setting (§17), with inference_main.py's flag in brackets and its default."""

    model_config = ConfigDict(extra="forbid")

    speaker: str = Field("", description="target speaker name or id (-s); '' = the first speaker")
    trans: int = Field(0, ge=-48, le=48, description="pitch shift in semitones (-t)")
    auto_predict_f0: bool = Field(False, description="predict f0 with the model, speech only (-a)")
    f0_predictor: Literal[F0_PREDICTORS] = Field("pm", description="f0 predictor (-f0p)")
    cluster_infer_ratio: float = Field(0, ge=0, le=1, description="cluster/retrieval ratio (-cr)")
    slice_db: int = Field(-40, ge=-100, le=0, description="silence threshold in dB (-sd)")
    noice_scale: float = Field(0.4, ge=0, le=2, description="prior noise scale (-ns)")
    pad_seconds: float = Field(0.5, ge=0, le=5, description="padding per slice in s (-p)")
    clip: float = Field(0, ge=0, le=600, description="forced clip length in s, 0 = off (-cl)")
    linear_gradient: float = Field(0, ge=0, le=10, description="crossfade between clips in s (-lg)")
    linear_gradient_retain: float = Field(0.75, ge=0, le=1, description="crossfade kept (-lgr)")
    enhancer_adaptive_key: int = Field(0, ge=-24, le=24, description="enhancer key (-eak)")
    f0_filter_threshold: float = Field(
        0.05, ge=0, le=1, description="crepe/rmvpe/fcpe threshold (-ft)"
    )
    loudness_envelope_adjustment: float = Field(
        1, ge=0, le=1, description="1 keeps the output envelope (-lea)"
    )
    k_step: int = Field(100, ge=1, le=1000, description="shallow diffusion steps (-ks)")
    second_encoding: bool = Field(False, description="re-encode before diffusion (-se)")
    use_spk_mix: bool = Field(
        False, description="dynamic speaker mix (-usm; the timeline is sent separately)"
    )
    wav_format: Literal[OUTPUT_FORMATS] = Field("flac", description="output format (-wf)")
    seed: int = Field(52468, ge=-(2**63), le=2**63 - 1, description="noise seed (--seed)")  # fmt: skip


@dataclass
class LoadedInfo:
    model: str
    config: str
    cluster: str
    device: str
    enhance: bool
    feature_retrieval: bool
    speakers: dict[str, int]
    sampling_rate: int
    diffusion_model: str = ""
    diffusion_config: str = ""
    shallow_diffusion: bool = False
    only_diffusion: bool = False
    backend: str = "torch"

    @property
    def mode(self) -> str:
        """The output name's mode, as inference_main.py: ``sovits``, ``sovdiff`` or ``diff``."""
        return "diff" if self.only_diffusion else "sovdiff" if self.shallow_diffusion else "sovits"


@dataclass
class ConvertResult:
    audio: np.ndarray  # float32 [L] at sampling_rate
    sampling_rate: int
    input_wav: np.ndarray  # float32 [L_in] at sampling_rate
    name: str  # inference_main.py's file name
    path: Path | None  # results/<name> when saved
    seconds: float  # wall time of the conversion


def list_devices() -> list[str]:
    """``["Auto", "cuda:0 (<name>)", ..., "cpu"]`` (the 4.1 UI's device list)."""
    import torch

    devs = ["Auto"]
    if torch.cuda.is_available():
        devs += [
            f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())
        ]
    return devs + ["cpu"]


def parse_device(choice: str | None) -> str | None:
    """``"Auto"``/None → None (auto), ``"cuda:0 (name)"`` → ``"cuda:0"``; anything else is refused."""
    import re

    if not choice or choice == "Auto":
        return None
    dev = choice.split(" ", 1)[0]
    if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", dev):
        raise ServiceError(f"device {choice!r}: use cpu, cuda or cuda:<index>")
    return dev


def check_device(device: str | None) -> None:
    """Refuse a device this machine does not have (ServiceError) instead of failing in torch."""
    if device is None or device == "cpu":
        return
    import torch

    if device.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= n:
            have = f"{n} CUDA device(s)" if n else "no CUDA"
            raise ServiceError(f"device {device}: this machine has {have} (use cpu or Auto)")
    elif device == "mps" and not torch.backends.mps.is_available():
        raise ServiceError("device mps: not available on this machine (use cpu or Auto)")


def check_fits(model_path: str | os.PathLike, config_path: str | os.PathLike) -> None:
    """Raise :class:`ServiceError` unless the checkpoint's tensors fit the model its config builds.

    (``load_checkpoint`` keeps fresh weights for a mismatch, as 4.1 did, which gives noise; the UI
    says why instead.) A release checkpoint without ``enc_q`` fits.
    """
    from common.checkpoint import CheckpointError, safe_load, strip_module_prefix
    from common.hparams import load_config
    from models import SynthesizerTrn

    try:
        hps = load_config(config_path, infer=True)
        net = SynthesizerTrn(hps.data.filter_length // 2 + 1,
                             hps.train.segment_size // hps.data.hop_length, **hps.model.to_dict())  # fmt: skip
    except (AttributeError, TypeError, KeyError, ValueError) as e:
        raise ServiceError(
            f"{Path(config_path).name}: not a usable so-vits-svc config ({message(e)})"
        ) from None
    ckpt = safe_load(model_path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(
            f"{Path(model_path).name}: not a so-vits-svc checkpoint (no 'model' entry)"
        )
    saved = strip_module_prefix(ckpt["model"])
    own = net.state_dict()
    wrong = [(k, tuple(saved[k].shape), tuple(v.shape)) for k, v in own.items()
             if k in saved and saved[k].shape != v.shape]  # fmt: skip
    missing = [k for k in own if k not in saved and not k.startswith("enc_q.")]
    if not wrong and not missing:
        return
    hint = ""
    if wrong:
        k, a, b = wrong[0]
        what = {
            "emb_g.weight": " (number of speakers)",
            "pre.weight": " (speech encoder / ssl_dim)",
        }
        hint = f"{k} is {a} in the checkpoint but {b} from the config{what.get(k, '')}"
    else:
        hint = f"{len(missing)} tensor(s) missing, e.g. {missing[0]}"
    raise ServiceError(
        f"{Path(model_path).name} does not fit {Path(config_path).name}: {hint}; "
        "choose the config.json the checkpoint was trained with"
    )


class VoiceService:
    """The loaded voice (an :class:`inference.infer_tool.Svc`) behind a lock."""

    def __init__(self, root: str | os.PathLike = ".", pretrain_dir: str | os.PathLike | None = None,
                 max_seconds: float = 600.0):  # fmt: skip
        self.root = Path(root).resolve()
        self.pretrain_dir = Path(pretrain_dir) if pretrain_dir else self.root / "pretrain"
        self.results = self.root / paths.RESULTS_DIR
        self.max_seconds = float(max_seconds)
        self.lock = threading.RLock()
        self.svc = None
        self.info: LoadedInfo | None = None

    # -- model --------------------------------------------------------------------------------
    def load(self, model_path: str | os.PathLike, config_path: str | os.PathLike, cluster_path: str | os.PathLike = "",
             device: str | None = None, enhance: bool = False, *, diffusion_model: str | os.PathLike = "",
             diffusion_config: str | os.PathLike = "", shallow_diffusion: bool = False,
             only_diffusion: bool = False, backend: str = "torch") -> LoadedInfo:  # fmt: skip
        """Load a voice (replacing the current one). A ``.npz``/``.pkl`` cluster file means feature
        retrieval, anything else k-means (as 4.1's UI decided).

        ``shallow_diffusion`` / ``only_diffusion`` (inference_main.py's ``-shd`` / ``-od``) need
        ``diffusion_model`` and ``diffusion_config`` (``-dm`` / ``-dc``); only-diffusion uses the
        diffusion model alone (its config's speakers). ``backend="onnx"`` runs the synthesizer in
        ONNX Runtime (``--backend onnx``; exported on first use into ``<model folder>/onnx_cache/``).
        """
        from inference.infer_tool import Svc

        if backend not in ("torch", "onnx"):
            raise ServiceError(f"backend {backend!r}: use torch or onnx")
        check_device(device)
        diffusion = bool(shallow_diffusion or only_diffusion)
        needed = (
            [(diffusion_model, "diffusion model"), (diffusion_config, "diffusion config")]
            if diffusion
            else []
        )
        if not only_diffusion:
            needed = [(model_path, "model"), (config_path, "config"), *needed]
        for p, what in needed:
            if not p or not Path(p).is_file():
                raise ServiceError(f"{what} file {p or '(none)'} not found; pick or upload one")
        if backend == "onnx" and not only_diffusion and paths.is_shipped(self.root, model_path):
            raise ServiceError(
                f"{Path(model_path).parent.name}: a shipped voice (pretrain/) is read-only and the "
                "onnx backend would write its export next to it; choose the torch backend, or copy "
                "the voice's .pth and config.json to trained/<name>/ first"
            )
        if only_diffusion and backend == "onnx":
            raise ServiceError(
                "only diffusion does not use the so-vits synthesizer; choose the torch backend"
            )
        cluster_path = str(cluster_path or "")
        if cluster_path and not Path(cluster_path).is_file():
            raise ServiceError(f"cluster / retrieval file {cluster_path} not found")
        retrieval = Path(cluster_path).suffix in (".npz", ".pkl")
        if not only_diffusion:
            check_fits(model_path, config_path)
        with self.lock:
            import json

            spk = {}
            if not only_diffusion:
                spk = json.loads(Path(config_path).read_text(encoding="utf-8")).get("spk", {})
            ids = sorted(spk.values())
            mixable = len(ids) > 1 and ids == list(range(len(ids)))  # dynamic mix needs ids 0..n-1
            dm, dc = (str(diffusion_model), str(diffusion_config)) if diffusion else ("", "")
            svc = Svc(model_path, config_path, device, cluster_path, enhance, dm, dc, bool(shallow_diffusion),
                      bool(only_diffusion), feature_retrieval=retrieval, spk_mix_enable=mixable,
                      pretrain_dir=self.pretrain_dir, backend=backend)  # fmt: skip
            # the new voice is ready: only now drop the old one (a failure above kept it)
            self.unload()
            self.svc = svc
            self.info = LoadedInfo(str(model_path), str(config_path), cluster_path, str(svc.dev),
                                   svc.nsf_hifigan_enhance, svc.feature_retrieval, dict(svc.spk2id),
                                   svc.target_sample, dm, dc, svc.shallow_diffusion, svc.only_diffusion,
                                   backend)  # fmt: skip
            return self.info

    def load_entry(self, name: str, cluster: str = "", device: str | None = None, enhance: bool = False,
                   diffusion_model: str = "", diffusion_config: str = "", **kw) -> LoadedInfo:  # fmt: skip
        """Load a listed voice (and listed diffusion files) by name: a client never sends a path.
        ``kw``: ``shallow_diffusion``, ``only_diffusion``, ``backend`` of :meth:`load`."""
        entry = paths.find_model(self.root, name)
        cluster_path = paths.find_cluster(self.root, cluster) if cluster else ""
        dm = paths.find_diffusion(self.root, diffusion_model) if diffusion_model else ""
        dc = paths.find_diffusion(self.root, diffusion_config) if diffusion_config else ""
        return self.load(entry.model, entry.config, cluster_path, device, enhance, diffusion_model=dm,
                         diffusion_config=dc, **kw)  # fmt: skip

    def unload(self) -> None:
        with self.lock:
            self.svc = None
            self.info = None
            import gc

            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except RuntimeError:
                pass

    def require(self):
        if self.svc is None:
            raise ServiceError("no voice is loaded; load a model first")
        return self.svc

    def speaker_name(self, speaker: str | int | None, field: str = "speaker") -> str:
        """The config's name for ``speaker`` (name or id); '' means the first speaker. ``field``:
        what the caller called it (an HTTP form field, ``options.speaker``), named in the error."""
        svc = self.require()
        if speaker in ("", None):
            if not svc.spk2id:
                raise ServiceError("the config lists no speakers")
            return next(iter(svc.spk2id))
        sid = self.speaker_id(speaker, field)
        return svc.speaker_name(sid) or str(sid)

    def speaker_id(self, speaker: str | int, field: str = "speaker") -> int:
        """``Svc.speaker_id`` (a name, or an id ``0..n-1``); an unknown speaker is refused naming
        ``field`` (the caller's field, not inference_main.py's ``-s``) and the voice's speakers."""
        svc = self.require()
        text = str(speaker).strip()
        known = text in svc.spk2id or (
            text.lstrip("-").isdigit() and 0 <= int(text) < svc.n_speakers
        )
        if not known:
            names = ", ".join(f"{k} ({v})" for k, v in svc.spk2id.items()) or "(none)"
            raise ServiceError(f"{field}: speaker {text!r} is not a speaker of the loaded voice: "
                               f"{names} (send one of these names or ids as {field})")  # fmt: skip
        return svc.speaker_id(text if text in svc.spk2id else int(text))

    # -- conversion -----------------------------------------------------------------------------
    def read_input(self, audio: str | os.PathLike | bytes | np.ndarray) -> np.ndarray:
        """Decode an input (path, uploaded bytes, or a wav already at the model's rate) → float32
        mono at the model's rate, with its length checked."""

        import soundfile as sf

        from common.audio import AudioError, load_audio, resample

        sr = self.require().target_sample
        if isinstance(audio, np.ndarray):
            wav = np.ascontiguousarray(audio, dtype=np.float32)
        elif isinstance(audio, (bytes, bytearray)):
            if not audio:
                raise AudioError("upload: empty file")
            data, file_sr = self._decode_upload(bytes(audio))
            wav = resample(data, file_sr, sr)
        else:
            try:
                info = sf.info(str(audio))
            except Exception:  # noqa: BLE001 - not for libsndfile: load_audio says why or decodes it
                info = None
            if info is not None:
                self._check_header(info.frames, info.samplerate, info.channels, Path(audio).name)
            wav, _ = load_audio(audio, sr=sr)
        if len(wav) > self.max_seconds * sr:
            raise ServiceError(
                f"input is {len(wav) / sr:.0f} s long; the limit is {self.max_seconds:.0f} s"
            )
        if len(wav) < sr // 10:
            raise ServiceError("input is shorter than 0.1 s")
        return wav

    def _check_header(self, frames: int, samplerate: int, channels: int, where: str) -> None:
        """Refuse an input by its header (before decoding): too long, odd rate or channel count."""
        if not MIN_INPUT_RATE <= samplerate <= MAX_INPUT_RATE:
            raise ServiceError(f"{where}: sample rate {samplerate} Hz is not supported "
                               f"({MIN_INPUT_RATE}..{MAX_INPUT_RATE})")  # fmt: skip
        if not 0 < channels <= MAX_INPUT_CHANNELS:
            raise ServiceError(f"{where}: {channels} channels; at most {MAX_INPUT_CHANNELS}")
        if frames / samplerate > self.max_seconds:
            raise ServiceError(f"{where}: input is {frames / samplerate:.0f} s long; the limit is "
                               f"{self.max_seconds:.0f} s (cut it into parts)")  # fmt: skip

    def _decode_upload(self, audio: bytes) -> tuple[np.ndarray, int]:
        """Uploaded bytes → (float32 mono ``[L]``, rate), the header checked before decoding and
        the channels mixed down block by block (memory: the mono signal, not ``[L, C]``)."""
        import io

        import soundfile as sf

        from common.audio import AudioError

        try:
            f = sf.SoundFile(io.BytesIO(audio))
        except Exception:  # noqa: BLE001
            raise AudioError("upload: not a readable audio file (wav, flac, ogg or mp3)") from None
        with f:
            self._check_header(f.frames, f.samplerate, f.channels, "upload")
            blocks, total = [], 0
            try:
                for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                    mono = block.mean(axis=1)
                    if not np.isfinite(mono).all():
                        raise AudioError("upload: contains NaN or infinite samples")
                    blocks.append(mono)
                    total += len(mono)
                    if total > self.max_seconds * f.samplerate:  # a header that understated
                        self._check_header(total, f.samplerate, f.channels, "upload")
            except sf.LibsndfileError:
                raise AudioError("upload: not a readable audio file (corrupt data)") from None
            file_sr = f.samplerate
        if total == 0:
            raise AudioError("upload: contains no samples")
        return np.concatenate(blocks), int(file_sr)

    def convert(self, audio: str | os.PathLike | bytes | np.ndarray, opts: ConvertOptions, clean_name: str,
                spk_mix_map: dict | None = None, progress: Callable[[int, int], None] | None = None,
                save: bool = True, speaker_field: str = "speaker") -> ConvertResult:  # fmt: skip
        """Convert one input with ``opts``; with ``save`` the result is written to
        ``results/<inference_main.py's name>`` (``clean_name`` is made a safe file name).
        ``speaker_field`` names ``opts.speaker`` as the caller sent it, for errors."""
        from common.audio import save_audio
        from inference.cli import output_name

        clean_name = paths.safe_name(clean_name)
        with self.lock:
            svc = self.require()
            wav = self.read_input(audio)
            use_mix = bool(opts.use_spk_mix) and len(svc.spk2id) > 1
            if use_mix:
                if not spk_mix_map:
                    raise ServiceError("dynamic voice mix is on but the mix timeline is empty")
                spk, spk_label = spk_mix_map, "spk_mix"
            else:
                spk = spk_label = self.speaker_name(opts.speaker, speaker_field)
            t0 = time.perf_counter()
            audio_out = svc.slice_inference(
                wav, spk, opts.trans, opts.slice_db, opts.cluster_infer_ratio, opts.auto_predict_f0,
                opts.noice_scale, pad_seconds=opts.pad_seconds, clip_seconds=opts.clip,
                lg_num=opts.linear_gradient, lgr_num=opts.linear_gradient_retain, f0_predictor=opts.f0_predictor,
                enhancer_adaptive_key=opts.enhancer_adaptive_key, cr_threshold=opts.f0_filter_threshold,
                k_step=opts.k_step, use_spk_mix=use_mix, second_encoding=opts.second_encoding,
                loudness_envelope_adjustment=opts.loudness_envelope_adjustment, seed=opts.seed,
                progress=progress,
            )  # fmt: skip
            took = time.perf_counter() - t0
            name = output_name(clean_name, opts.trans, spk_label, opts.cluster_infer_ratio, opts.auto_predict_f0,
                               opts.f0_predictor, opts.wav_format, svc.shallow_diffusion,
                               svc.only_diffusion)  # fmt: skip
            path = None
            if save:
                path = paths.inside(self.results, self.results / name)
                save_audio(path, audio_out, svc.target_sample, format=opts.wav_format)
            return ConvertResult(audio_out, svc.target_sample, wav, name, path, took)

    def f0_curves(self, wav_in: np.ndarray, wav_out: np.ndarray, predictor: str = "pm",
                  threshold: float = 0.05) -> tuple[np.ndarray, np.ndarray, float]:  # fmt: skip
        """Raw f0 (Hz, 0 = unvoiced) of the input and the output, and the frame period in s."""
        with self.lock:
            svc = self.require()
            pred = svc.f0_predictor(predictor, threshold)
            f_in = np.asarray(pred.compute_f0(np.asarray(wav_in, np.float32)), np.float32)
            f_out = np.asarray(pred.compute_f0(np.asarray(wav_out, np.float32)), np.float32)
            return f_in, f_out, svc.hop_size / svc.target_sample

    def infer_chunk(self, audio: bytes | np.ndarray, speaker: str | int, tran: float, out_sr: int = 0,
                    speaker_field: str = "speaker") -> tuple[np.ndarray, int]:  # fmt: skip
        """One short chunk converted whole (4.1 flask_api's raw path: no slicing, cluster 0,
        noise 0.4, f0 ``pm``) → ``(float32 [N_out], out_sr)``.

        ``audio``: uploaded bytes (``N_in`` samples at their own rate ``in_sr``) or a wav already at
        the model's rate. ``out_sr``: the answer's rate, 0 = ``in_sr``. The answer has exactly
        ``N_out = round(N_in · out_sr / in_sr)`` samples (``N_in`` when the rates are equal), so a
        plug-in that plays chunk after chunk gets no gap: the synthesizer gives whole hops
        (``n_frames · hop`` samples for ``n_frames = L // hop`` at the model's rate), so the chunk
        is zero-padded at its end to ``ceil(L / hop) + 1`` frames, converted, resampled, and the
        first ``N_out`` samples are kept (the padding's audio is dropped, never a zero tail).
        """
        from common.audio import resample

        with self.lock:
            svc = self.require()
            sr, hop = svc.target_sample, svc.hop_size
            if isinstance(audio, (bytes, bytearray)):
                data, in_sr = self._decode_upload(bytes(audio))
                wav = self.read_input(resample(data, in_sr, sr))
            else:
                data, in_sr = audio, sr
                wav = self.read_input(audio)
            out_sr = int(out_sr or in_sr)
            n_out = (2 * len(data) * out_sr + in_sr) // (2 * in_sr)  # round(N_in·out/in), exact
            sid = self.speaker_id(speaker, speaker_field)
            n_frames = -(-len(wav) // hop) + 1
            padded = np.zeros(n_frames * hop, dtype=np.float32)
            padded[: len(wav)] = wav
            out, _, _ = svc.infer(sid, tran, padded)
            out = resample(out.detach().float().cpu().numpy(), sr, out_sr)
            if len(out) < n_out:  # cannot happen: one spare hop covers the resampling's rounding
                raise RuntimeError(f"chunk: {len(out)} samples converted, {n_out} needed")
            return out[:n_out], out_sr
