"""``inference_main.py``: every flag of so-vits-svc 4.1 (sovits-4.1.md §2.8), same names and defaults.

Inputs are ``raw/<name>`` (``.wav`` appended when the name has no ``.``) in any format soundfile or
librosa reads; outputs are ``results/{name}_{key}_{spk}{cluster}_{mode}_{f0p}.{wav_format}``
(``key`` = ``auto`` or ``{tran}key``; ``cluster`` = ``""`` or ``_{ratio}``; ``mode`` = ``sovits``,
``sovdiff`` or ``diff``; ``spk`` = ``spk_mix`` when mixing), written atomically at the model's rate (44.1 kHz).

Extra flags (not in the reference): ``--seed`` (the synthesizer's noise seed, 52468 as the
reference hard-codes), ``--precision bf16`` (the whole conversion's networks in bf16 on the CPU), ``--max_chunk_seconds``,
``--backend onnx`` / ``--onnx_model`` (synthesizer in ONNX Runtime, see onnxexport/runtime.py).

Differences: a non-wav input is read directly (the reference first wrote a ``.wav`` copy next to
it); ``-fr`` defaults to ``logs/44k/feature_and_index.npz`` (our pickle-free index; a reference
``.pkl`` is never unpickled: it is refused with the command that rebuilds the index); ``spkmix.py`` is
read as data (``ast.literal_eval``) from the current folder, else from the repository; a missing
cluster file with ``-cr`` ≠ 0, or a missing diffusion model / config with ``-shd``/``-od``, is an
error naming the file and the flag, not a silent fallback. ``--seed`` also seeds the diffusion
noise, so ``-shd``/``-od`` output is reproducible. ``mode`` in the output name is ``sovdiff``
with ``-shd`` and ``diff`` with ``-od``.
"""

from __future__ import annotations

import argparse
import ast
import logging
import math
import os
import sys
import time
from pathlib import Path

from common.atomic import remove_stale_temporaries
from common.cli import os_error_line
from common.errors import InputError, PartialFailure, UsageError, UserError

logger = logging.getLogger("inference_main")

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_SEMITONES = 48  # -t / -eak: four octaves either way
MAX_NOISE_SCALE = 2.0
# -cl: a forced clip shorter than a few 11.6 ms frames comes out as silence (each clip loses up to a
# frame to rounding); 0 turns forced clipping off
MIN_CLIP_SECONDS = 0.1
STALE_SECONDS = 3600  # a results/ temporary this old belongs to no running conversion  # -ns: the reference uses 0.4; far above 1 the output is noise


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="sovits4 inference")
    a = p.add_argument
    # what you must set
    a(
        "-m",
        "--model_path",
        type=str,
        default="logs/44k/G_37600.pth",
        help="model path (G_*.pth; a folder: its newest G_*.pth)",
    )
    a("-c", "--config_path", type=str, default="logs/44k/config.json", help="config path")
    a(
        "-cl",
        "--clip",
        type=float,
        default=0,
        help="forced clip length in s (0 = silence slicing only; else at least 0.1)",
    )
    a("-n", "--clean_names", type=str, nargs="+", default=["君の知らない物語-src.wav"],
      help="file names under raw/")  # fmt: skip
    a("-t", "--trans", type=int, nargs="+", default=[0], help="semitone shift per file")
    a("-s", "--spk_list", type=str, nargs="+", default=["buyizi"], help="target speaker names")
    # optional
    a("-a", "--auto_predict_f0", action="store_true", default=False,
      help="predict f0 with the model (speech; do not use for singing)")  # fmt: skip
    a("-cm", "--cluster_model_path", type=str, default="",
      help="cluster model or feature index (default logs/44k/kmeans_10000.pt, with -fr "
           "logs/44k/feature_and_index.npz)")  # fmt: skip
    a(
        "-cr",
        "--cluster_infer_ratio",
        type=float,
        default=0,
        help="cluster / retrieval mix ratio 0..1",
    )
    a("-lg", "--linear_gradient", type=float, default=0, help="crossfade length in s between clips")
    a("-f0p", "--f0_predictor", type=str, default="pm", help="crepe, pm, dio, harvest, rmvpe, fcpe")
    a("-eh", "--enhance", action="store_true", default=False, help="NSF-HiFiGAN enhancer")
    a("-shd", "--shallow_diffusion", action="store_true", default=False, help="shallow diffusion")
    a(
        "-usm",
        "--use_spk_mix",
        action="store_true",
        default=False,
        help="dynamic speaker mix (spkmix.py)",
    )
    a("-lea", "--loudness_envelope_adjustment", type=float, default=1,
      help="1 keeps the output loudness envelope, 0 uses the input's")  # fmt: skip
    a("-fr", "--feature_retrieval", action="store_true", default=False,
      help="feature retrieval (faiss index) instead of k-means")  # fmt: skip
    # shallow diffusion
    a("-dm", "--diffusion_model_path", type=str, default="logs/44k/diffusion/model_0.pt")
    a("-dc", "--diffusion_config_path", type=str, default="logs/44k/diffusion/config.yaml")
    a("-ks", "--k_step", type=int, default=100, help="shallow diffusion steps")
    a("-se", "--second_encoding", action="store_true", default=False,
      help="re-encode the so-vits output before diffusion")  # fmt: skip
    a("-od", "--only_diffusion", action="store_true", default=False, help="diffusion only")
    # rarely changed
    a("-sd", "--slice_db", type=int, default=-40, help="silence threshold in dB")
    a(
        "-d",
        "--device",
        type=str,
        default=None,
        help="device (default: cuda if available, else cpu)",
    )
    a("-ns", "--noice_scale", type=float, default=0.4, help="prior noise scale")
    a(
        "-p",
        "--pad_seconds",
        type=float,
        default=0.5,
        help="zero padding on each side of a slice (s)",
    )
    a("-wf", "--wav_format", type=str, default="flac", help="output format (soundfile)")
    a("-lgr", "--linear_gradient_retain", type=float, default=0.75,
      help="fraction of the crossfade window that is blended (0..1)")  # fmt: skip
    a("-eak", "--enhancer_adaptive_key", type=int, default=0, help="enhancer key shift (semitones)")
    a("-ft", "--f0_filter_threshold", type=float, default=0.05,
      help="f0 threshold for crepe / rmvpe / fcpe (0..1)")  # fmt: skip
    # ours
    a("--seed", type=int, default=52468, help="noise seed (same seed, same output)")
    a(
        "--precision",
        choices=["fp32", "bf16"],
        default="fp32",
        help="bf16: encoder, neural f0, synthesizer and enhancer in bfloat16 on the CPU",
    )
    a("--backend", choices=["torch", "onnx"], default="torch",
      help="run the synthesizer in torch or in ONNX Runtime (same output to float rounding)")  # fmt: skip
    a("--onnx_model", type=str, default=None,
      help="with --backend onnx: a *_SoVits.onnx from onnx_export.py (default: export the "
           "checkpoint on first use into <model folder>/onnx_cache/)")  # fmt: skip
    a("--max_chunk_seconds", type=float, default=30.0,
      help="voiced chunks longer than this are clipped with a crossfade (memory bound; 0 = never)")  # fmt: skip
    a("--allow_partial", action="store_true", default=False,
      help="experts: load a checkpoint that does not fit the config (mismatched keys keep random values)")  # fmt: skip
    a("--visemes", type=str, default="",
      help="visemes model (train_visemes.py V_*.pth): also write <output>.blendshapes.npy/.csv")  # fmt: skip
    return p


def fill_a_to_b(a: list, b: list) -> None:
    """Pad ``a`` with ``a[0]`` to the length of ``b`` (reference)."""
    while len(a) < len(b):
        a.append(a[0])


def load_spk_mix_map(path: str | os.PathLike | None = None) -> tuple[dict, Path]:
    """``spk_mix_map`` from ``spkmix.py`` (./spkmix.py, else the repository's), read as data."""
    candidates = [Path(path)] if path else [Path("spkmix.py"), REPO_ROOT / "spkmix.py"]
    for cand in candidates:
        if cand.is_file():
            break
    else:
        raise FileNotFoundError(
            "spkmix.py not found (looked in the current folder and the repository)"
        )
    return parse_spk_mix_map(cand.read_text(encoding="utf-8"), str(cand)), cand


MAX_MIX_DEPTH = 8  # {speaker: [[t0, t1, v0, v1], ...]} needs 3 levels of brackets
MAX_MIX_SPEAKERS = 1000
MAX_MIX_SEGMENTS = 10_000  # per speaker
MAX_MIX_WEIGHT = 1_000_000


def check_spk_mix_text(text: str, source: str, max_chars: int | None = None) -> None:
    """Refuse a mix text too long or nested too deep to parse safely (InputError, one line)."""
    if max_chars is not None and len(text) > max_chars:
        raise InputError(f"{source}: {len(text)} characters; a mix timeline is at most {max_chars}")
    depth = deepest = 0
    quote = None  # inside a string (its quote character) or a comment ("#")
    for c in text:
        if quote:
            if c == quote or (quote == "#" and c == "\n"):
                quote = None
        elif c in "'\"#":
            quote = c
        elif c in "[({":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "])}":
            depth -= 1
    if deepest > MAX_MIX_DEPTH:
        raise InputError(f"{source}: brackets nested {deepest} deep; spk_mix_map is "
                         "{speaker: [[t_start, t_end, v_start, v_end], ...]}")  # fmt: skip


def check_spk_mix_value(value, source: str) -> dict:
    """``value`` if it is ``{speaker: [[t0, t1, v0, v1], ...]}`` of finite numbers, else InputError."""
    if not isinstance(value, dict):
        raise InputError(f"{source}: spk_mix_map must be a dict")
    if len(value) > MAX_MIX_SPEAKERS:
        raise InputError(f"{source}: {len(value)} speakers; at most {MAX_MIX_SPEAKERS}")
    for spk, segs in value.items():
        if not isinstance(spk, (str, int)) or isinstance(spk, bool):
            raise InputError(f"{source}: speaker {spk!r:.40}: a key is a speaker name or id")
        if not isinstance(segs, (list, tuple)) or len(segs) > MAX_MIX_SEGMENTS:
            raise InputError(f"{source}: speaker {spk!r:.40}: give a list of at most {MAX_MIX_SEGMENTS} "
                             "segments [t_start, t_end, v_start, v_end]")  # fmt: skip
        for seg in segs:
            if (not isinstance(seg, (list, tuple)) or len(seg) != 4
                    or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                               and math.isfinite(x) for x in seg)):  # fmt: skip
                raise InputError(f"{source}: speaker {spk!r:.40}: segment {str(seg):.60} must be "
                                 "[t_start, t_end, v_start, v_end], four finite numbers")  # fmt: skip
            if not (0 <= seg[0] <= 1 and 0 <= seg[1] <= 1):
                raise InputError(f"{source}: speaker {spk!r:.40}: segment {str(seg):.60}: times are "
                                 "fractions of the output, 0..1")  # fmt: skip
            if not (0 <= seg[2] <= MAX_MIX_WEIGHT and 0 <= seg[3] <= MAX_MIX_WEIGHT):
                raise InputError(f"{source}: speaker {spk!r:.40}: segment {str(seg):.60}: weights are "
                                 f"0..{MAX_MIX_WEIGHT} (normalised per frame)")  # fmt: skip
    return value


def parse_spk_mix_map(text: str, source: str = "spkmix.py") -> dict:
    """The ``spk_mix_map = {...}`` literal of a spkmix.py text, read as data (never executed);
    its shape is checked (:func:`check_spk_mix_value`) and its nesting bounded before parsing."""
    check_spk_mix_text(text, source)
    try:
        tree = ast.parse(text, filename=source)
    except (RecursionError, MemoryError):  # e.g. 1+1+1+... or ------1: the parser's own limits
        raise InputError(f"{source}: expression too deeply nested to read") from None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "spk_mix_map" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                raise InputError(
                    f"{source}: spk_mix_map must be a literal dict of lists of numbers"
                ) from None
            return check_spk_mix_value(value, source)
    raise InputError(f"{source}: no `spk_mix_map = {{...}}` assignment")


def output_name(clean_name: str, tran: int, spk: str, cluster_infer_ratio: float, auto_predict_f0: bool,
                f0p: str, wav_format: str, shallow_diffusion: bool = False,
                only_diffusion: bool = False) -> str:  # fmt: skip
    key = "auto" if auto_predict_f0 else f"{tran}key"
    cluster_name = "" if cluster_infer_ratio == 0 else f"_{cluster_infer_ratio}"
    mode = "diff" if only_diffusion else "sovdiff" if shallow_diffusion else "sovits"
    return f"{clean_name}_{key}_{spk}{cluster_name}_{mode}_{f0p}.{wav_format}"


def check_flags(args: argparse.Namespace) -> None:
    """Reject out-of-range flags before anything is loaded (one line naming the flag, exit 2)."""
    from modules.f0 import F0_PREDICTORS

    def bad(flag: str, value, rule: str) -> None:
        raise UsageError(f"{flag} {value}: out of range; {rule}")

    if not 0 <= args.cluster_infer_ratio <= 1:
        bad("-cr", args.cluster_infer_ratio, "the cluster / retrieval ratio must be in 0..1")
    for t in args.trans:
        if abs(t) > MAX_SEMITONES:
            bad("-t", t, f"a key shift must be within +-{MAX_SEMITONES} semitones (4 octaves)")
    if abs(args.enhancer_adaptive_key) > MAX_SEMITONES:
        bad("-eak", args.enhancer_adaptive_key, f"must be within +-{MAX_SEMITONES} semitones")
    for flag, value in (("-cl", args.clip), ("-lg", args.linear_gradient),
                        ("-p", args.pad_seconds), ("--max_chunk_seconds", args.max_chunk_seconds)):  # fmt: skip
        if not (value >= 0 and math.isfinite(value)):
            bad(flag, value, "a length in seconds must be >= 0")
    if 0 < args.clip < MIN_CLIP_SECONDS:
        bad("-cl", args.clip, f"a forced clip is 0 (off) or at least {MIN_CLIP_SECONDS} s "
            "(one frame is 512 samples, 11.6 ms; shorter clips come out silent)")  # fmt: skip
    if args.clip > 0 and args.linear_gradient >= args.clip:
        bad(
            "-lg",
            args.linear_gradient,
            f"the crossfade must be shorter than the clip (-cl {args.clip})",
        )
    for flag, value in (("-lgr", args.linear_gradient_retain), ("-lea", args.loudness_envelope_adjustment),
                        ("-ft", args.f0_filter_threshold)):  # fmt: skip
        if not 0 <= value <= 1:
            bad(flag, value, "must be in 0..1")
    if not 0 <= args.noice_scale <= MAX_NOISE_SCALE:
        bad(
            "-ns",
            args.noice_scale,
            f"the noise scale must be in 0..{MAX_NOISE_SCALE} (default 0.4)",
        )
    if args.slice_db > 0:
        bad(
            "-sd", args.slice_db, "the silence threshold is in dB below full scale (<= 0, e.g. -40)"
        )
    if args.f0_predictor.strip().lower() not in F0_PREDICTORS:
        raise UsageError(f"-f0p {args.f0_predictor}: unknown f0 predictor",
                         f"choose one of {', '.join(F0_PREDICTORS)}")  # fmt: skip
    require_f0(args.f0_predictor)
    import soundfile as sf

    if args.wav_format.upper() not in sf.available_formats():
        raise UsageError(f"-wf {args.wav_format}: not an output format soundfile can write",
                         ", ".join(sorted(f.lower() for f in sf.available_formats())))  # fmt: skip


def require_f0(f0_predictor: str) -> None:
    """Before the model loads: a missing rmvpe.pt (or crepe / fcpe file) is one line naming the
    way round (``-f0p fcpe`` ships with the install)."""
    from modules.f0 import SHIPPED_F0, F0ModelMissing, require_f0_model

    try:
        require_f0_model(f0_predictor)
    except F0ModelMissing as e:
        raise F0ModelMissing(
            str(e), f"or pass -f0p {SHIPPED_F0}: it ships with the install"
        ) from None


def resolve_model_path(model_path: str) -> str:
    """``-m``: a checkpoint file as given; a training folder: its newest ``G_<step>.pth``."""
    if not os.path.isdir(model_path):
        return model_path
    from common.checkpoint import latest_checkpoint_path

    newest = latest_checkpoint_path(model_path, "G_*.pth")
    if newest is None:
        raise InputError(f"-m {model_path}: a folder without G_<step>.pth checkpoints",
                         "give a checkpoint file, or train first with train.py")  # fmt: skip
    logger.info("-m %s: using its newest checkpoint %s", model_path, newest)
    return str(newest)


def resolve_cluster_path(ratio: float, path: str, feature_retrieval: bool) -> str:
    """``-cm`` for ``-cr ratio``: ``""`` when the ratio is 0; else the given path or the default
    (``logs/44k/kmeans_10000.pt``, with ``-fr`` ``logs/44k/feature_and_index.npz``), which must
    exist (InputError naming it and the flag)."""
    if ratio == 0:
        return ""
    if path == "":
        if feature_retrieval:
            npz, pkl = "logs/44k/feature_and_index.npz", "logs/44k/feature_and_index.pkl"
            path = pkl if not os.path.exists(npz) and os.path.exists(pkl) else npz
        else:
            path = "logs/44k/kmeans_10000.pt"
    if not os.path.exists(path):
        what = (
            "feature index (train_index.py)"
            if feature_retrieval
            else "cluster model (cluster/train_cluster.py)"
        )
        raise InputError(f"{path}: not found; -cr {ratio} needs a {what}",
                         "build it, give it with -cm, or use -cr 0")  # fmt: skip
    return path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    check_flags(args)
    args.model_path = resolve_model_path(args.model_path)
    if args.backend == "onnx" and args.auto_predict_f0:
        raise UsageError("-a (automatic f0 prediction) is not part of the ONNX graph (as in "
                         "so-vits-svc 4.1's export)", "use --backend torch for it")  # fmt: skip

    args.cluster_model_path = resolve_cluster_path(
        args.cluster_infer_ratio, args.cluster_model_path, args.feature_retrieval
    )

    use_spk_mix = args.use_spk_mix
    spk_list = args.spk_list
    spk_mix_map = None
    if use_spk_mix:
        try:
            spk_mix_map, mix_path = load_spk_mix_map()
        except SyntaxError as e:
            raise InputError(f"{e.filename}: not valid Python syntax at line {e.lineno}",
                             "spkmix.py must hold spk_mix_map = {...}") from None  # fmt: skip
        except (OSError, ValueError) as e:
            raise InputError(str(e)) from None
        logger.info("speaker mix from %s", mix_path)

    from common.audio import save_audio
    from inference.infer_tool import Svc

    face = None
    if args.visemes:  # motion sidecar (tiny; runs on the CPU)
        from motion.predict import VisemesPredictor

        if args.backend == "onnx" or args.only_diffusion:
            raise UsageError("--visemes needs the voice model's latent z",
                             "use it with --backend torch and without -od")  # fmt: skip
        face = VisemesPredictor(args.visemes)
    t0 = time.perf_counter()
    from vdecoder.pretrained import VocoderMissing

    try:
        svc_model = Svc(args.model_path, args.config_path, args.device, args.cluster_model_path, args.enhance,
                        args.diffusion_model_path, args.diffusion_config_path, args.shallow_diffusion,
                        args.only_diffusion, use_spk_mix, args.feature_retrieval, precision=args.precision,
                        max_chunk_seconds=args.max_chunk_seconds,
                        allow_partial=args.allow_partial, backend=args.backend,
                        onnx_model=args.onnx_model)  # fmt: skip
    except VocoderMissing as e:  # the enhancer's or the diffusion config's NSF-HiFiGAN
        diffusion = args.shallow_diffusion or args.only_diffusion
        hint = ("-shd/-od need it (vocoder.ckpt of the -dc config); or convert without -shd/-od"
                if diffusion else "-eh needs it; or convert without -eh")  # fmt: skip
        raise VocoderMissing(str(e), hint) from None
    logger.info("model loaded in %.2f s", time.perf_counter() - t0)
    if svc_model.shallow_diffusion:  # -ks against the diffusion model, before any input is read
        k_max = int(svc_model.diffusion_model.k_step_max)
        if not 1 <= args.k_step <= k_max:
            raise UsageError(f"-ks {args.k_step}: out of range; the diffusion model "
                             f"{args.diffusion_model_path} takes 1..{k_max} steps (k_step_max)",
                             f"use -ks {k_max} or less")  # fmt: skip
    if face is not None:  # the visemes model against the voice model's z
        face.check_voice(svc_model.hps_ms, args.config_path, args.model_path)

    if spk_mix_map is not None and len(spk_mix_map) <= 1:
        use_spk_mix = False
    if use_spk_mix:
        svc_model.check_spk_mix_diffusion()
        spk_list = [spk_mix_map]
    else:
        for spk in spk_list:  # a wrong speaker fails before any input is converted
            svc_model.speaker_id(spk)
    os.makedirs("raw", exist_ok=True)
    os.makedirs("results", exist_ok=True)
    remove_stale_temporaries("results", older_than=STALE_SECONDS)  # left by a killed conversion

    trans = list(args.trans)
    clean_names = args.clean_names
    fill_a_to_b(trans, clean_names)
    failed: list[str] = []
    for clean_name, tran in zip(clean_names, trans):
        raw_audio_path = f"raw/{clean_name}"
        if "." not in raw_audio_path:
            raw_audio_path += ".wav"
        for spk in spk_list:
            try:
                convert_one(svc_model, args, raw_audio_path, clean_name, spk, tran, use_spk_mix,
                            save_audio, face)  # fmt: skip
            except (UserError, OSError) as e:
                line = str(e) if isinstance(e, UserError) else os_error_line(e)
                print(line, file=sys.stderr, flush=True)
                failed.append(raw_audio_path)
                break  # the next speakers would fail the same way on this input
    logger.info(
        "time per stage: %s", ", ".join(f"{k} {v:.2f} s" for k, v in svc_model.timings.items())
    )
    if failed:
        n_all = len(clean_names)
        names = ", ".join(failed)
        if len(failed) == n_all:
            raise InputError(f"{names}: nothing converted ({len(failed)} of {n_all} input(s) failed; "
                             "reasons above)")  # fmt: skip
        raise PartialFailure(f"{names}: {len(failed)} of {n_all} inputs failed (reasons above); "
                             "the others were converted")  # fmt: skip
    return 0


def convert_one(svc_model, args, raw_audio_path, clean_name, spk, tran, use_spk_mix, save_audio,
                face=None):  # fmt: skip
    """Convert one input for one speaker and write its result (atomically)."""
    if not os.path.isfile(raw_audio_path):
        what = (
            "is a folder, not an audio file"
            if os.path.isdir(raw_audio_path)
            else "input file not found"
        )
        raise InputError(f"{raw_audio_path}: {what}", "inputs are names of files in raw/")
    t1 = time.perf_counter()
    if face is not None:
        from motion.conversion import ZTrack

        svc_model.z_listener = ZTrack(face.z_silence, svc_model.hop_size)
    audio = svc_model.slice_inference(
        raw_audio_path, spk, tran, args.slice_db, args.cluster_infer_ratio, args.auto_predict_f0,
        args.noice_scale, pad_seconds=args.pad_seconds, clip_seconds=args.clip,
        lg_num=args.linear_gradient, lgr_num=args.linear_gradient_retain,
        f0_predictor=args.f0_predictor, enhancer_adaptive_key=args.enhancer_adaptive_key,
        cr_threshold=args.f0_filter_threshold, k_step=args.k_step, use_spk_mix=use_spk_mix,
        second_encoding=args.second_encoding,
        loudness_envelope_adjustment=args.loudness_envelope_adjustment, seed=args.seed,
    )  # fmt: skip
    spk_name = "spk_mix" if use_spk_mix else spk
    res_path = os.path.join("results", output_name(
        clean_name, tran, spk_name, args.cluster_infer_ratio, args.auto_predict_f0,
        args.f0_predictor, args.wav_format, args.shallow_diffusion, args.only_diffusion))  # fmt: skip
    save_audio(res_path, audio, svc_model.target_sample, format=args.wav_format)
    dur = len(audio) / svc_model.target_sample
    logger.info("wrote %s (%.2f s of audio in %.2f s)", res_path, dur, time.perf_counter() - t1)
    if face is not None:
        from motion.predict import track_prefix, write_track

        paths = write_track(track_prefix(res_path), face(svc_model.z_listener.z))
        svc_model.z_listener = None
        logger.info("face track: %s, %s (86.13 fps)", *paths)
