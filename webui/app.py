"""The Gradio web UI (``webUI.py``): convert, mix voices, compress, with English labels.

Tabs (see README "Web UI"):

- **Convert**: the voice panel (local voice from ``logs/44k``/``trained/<name>``, a shipped one
  from ``pretrain/<name>`` (marked "(shipped)", read-only: :mod:`webui.paths`), or an uploaded
  .pth + config, cluster / retrieval file, device, enhancer, synthesizer backend torch / ONNX
  Runtime, shallow diffusion / only diffusion with a diffusion model + config from
  ``logs/44k/diffusion/`` or uploaded, load / unload, speaker), every
  conversion setting of 4.1's UI with inference_main.py's defaults, the input (upload, microphone,
  or text through espeak-ng when installed), and the result: player, download (named as the CLI
  names it, in ``results/``), f0 curves of input and output in notes, both spectrograms.
- **Voice mix** (:mod:`webui.mix_tab`): static merge of checkpoints (convex / linear) into
  ``trained/<name>/``, and the dynamic mix timeline editor (spkmix.py) used by "dynamic voice mix".
- **Tools** (:mod:`webui.tools_tab`): model compression into ``compressed/``; ONNX export of the
  loaded voice into ``checkpoints/<name>/`` (onnx_export.py).

Files: uploads and pictures live in a temp folder of the UI's own (removed at exit); the UI writes
only to ``results/``, ``trained/``, ``compressed/``, ``checkpoints/``, ``spkmix.py`` and (ONNX
Runtime backend, never for a shipped voice) ``<model folder>/onnx_cache/``; uploads are
size-limited. At start the console shows the address and this script's ``--host`` / ``--share``
flags (Gradio's own lines, which name ``launch()`` arguments, are silenced).
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import tempfile
import traceback
import uuid
from pathlib import Path

from webui import hooks, mix, paths, plots, tts
from webui.mix_tab import MixTab
from webui.realtime_tab import RealtimeTab
from webui.service import (
    F0_PREDICTORS,
    OUTPUT_FORMATS,
    ConvertOptions,
    VoiceService,
    check_server_flags,
    list_devices,
    message,
    parse_device,
    user_errors,
)
from webui.tools_tab import ToolsTab

logger = logging.getLogger(__name__)

NONE = "(none)"
# the conversion settings in the order the handlers receive them (ConvertOptions field names)
SETTING_NAMES = (
    "speaker", "trans", "auto_predict_f0", "f0_predictor", "cluster_infer_ratio", "slice_db", "wav_format",
    "noice_scale", "pad_seconds", "clip", "linear_gradient", "linear_gradient_retain", "enhancer_adaptive_key",
    "f0_filter_threshold", "loudness_envelope_adjustment", "k_step", "second_encoding", "use_spk_mix",
)  # fmt: skip


class WebUI:
    """The UI's state and handlers (one voice, one temp folder); :meth:`build` makes the Blocks."""

    def __init__(self, root: str | os.PathLike = ".", temp_dir: str | os.PathLike | None = None,
                 max_seconds: float = 600.0):  # fmt: skip
        self.root = Path(root).resolve()
        self.service = VoiceService(self.root, max_seconds=max_seconds)
        self.tmp = Path(temp_dir or tempfile.mkdtemp(prefix="sovits-webui-")).resolve()
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.debug = False
        self.tools = ToolsTab(self)
        self.mix_tab = MixTab(self)

    # -- helpers --------------------------------------------------------------------------------
    def _fail(self, e: BaseException) -> str:
        if self.debug or not isinstance(e, user_errors()):
            logger.error("%s", "".join(traceback.format_exception(e)))
        if isinstance(e, user_errors()):
            return f"Error: {message(e)}"
        return f"Error (unexpected, see the console): {type(e).__name__}: {message(e)}"

    def _tmp_file(self, suffix: str) -> Path:
        d = self.tmp / "out"
        d.mkdir(exist_ok=True)
        return d / f"{uuid.uuid4().hex[:12]}{suffix}"

    def model_names(self) -> list[str]:
        return [e.name for e in paths.discover_models(self.root)]

    def model_choices(self) -> list[tuple[str, str]]:
        """``(label, name)`` of each listed voice; shipped ones (``pretrain/<name>``) are marked."""
        return [(f"{e.name} (shipped)" if e.shipped else e.name, e.name)
                for e in paths.discover_models(self.root)]  # fmt: skip

    def cluster_names(self) -> list[str]:
        return [NONE, *paths.discover_cluster_files(self.root)]

    def diffusion_names(self) -> tuple[list[str], list[str]]:
        models, configs = paths.discover_diffusion(self.root)
        return [NONE, *models], [NONE, *configs]

    def _diffusion_file(self, upload, name) -> str:
        """An uploaded diffusion file, else the listed one picked, else ''."""
        if upload:
            return upload
        return str(paths.find_diffusion(self.root, name)) if name and name != NONE else ""

    # -- voice panel ----------------------------------------------------------------------------
    def load(self, source, local_name, up_model, up_config, cluster_name, cluster_upload, device, enhance,
             diff_name="", diff_upload=None, diff_cfg_name="", diff_cfg_upload=None, shallow=False,
             only=False, backend="torch"):  # fmt: skip
        import gradio as gr

        try:
            if source == "upload":
                if not up_model or not up_config:
                    raise ValueError("upload both the model (.pth) and its config (.json)")
                model, config = up_model, up_config
            else:
                if not local_name:
                    raise ValueError(
                        "no voice in logs/44k, trained/ or pretrain/; upload one or train one"
                    )
                entry = paths.find_model(self.root, local_name)
                model, config = entry.model, entry.config
            cluster = cluster_upload or (
                paths.find_cluster(self.root, cluster_name)
                if cluster_name and cluster_name != NONE
                else ""
            )
            diffusion = {}
            if shallow or only:
                diffusion = dict(diffusion_model=self._diffusion_file(diff_upload, diff_name),
                                 diffusion_config=self._diffusion_file(diff_cfg_upload, diff_cfg_name),
                                 shallow_diffusion=bool(shallow), only_diffusion=bool(only))  # fmt: skip
            info = self.service.load(model, config, cluster, parse_device(device), bool(enhance),
                                     backend=backend or "torch", **diffusion)  # fmt: skip
        except Exception as e:  # noqa: BLE001
            # the voice that was loaded stays loaded (VoiceService.load swaps only when ready):
            # its speakers and mix state stay as they are
            kept = self.service.info
            note = (
                f" (still loaded: {Path(kept.model or kept.diffusion_model).name})" if kept else ""
            )
            if kept is None:
                return (self._fail(e) + note, gr.update(choices=[], value=None),
                        gr.update(interactive=False, value=False), "")  # fmt: skip
            return self._fail(e) + note, gr.update(), gr.update(), gr.update()
        spk = list(info.speakers)
        what = (
            "k-means"
            if info.cluster and not info.feature_retrieval
            else "retrieval"
            if info.cluster
            else "none"
        )
        voice = Path(info.diffusion_model).name if info.only_diffusion else Path(info.model).name
        diff = {"sovits": "off", "sovdiff": "shallow", "diff": "only"}[info.mode]
        if info.mode != "sovits":
            diff += f" ({Path(info.diffusion_model).name})"
        msg = (f"Loaded {voice} on {info.device}: {len(spk)} speaker(s), cluster: {what}, "
               f"enhancer: {'on' if info.enhance else 'off'}, diffusion: {diff}, backend: {info.backend}")  # fmt: skip
        mixable = len(spk) > 1 and getattr(self.service.svc.net_g_ms, "character_mix", False)
        return (msg, gr.update(choices=spk, value=spk[0] if spk else None),
                gr.update(interactive=mixable, value=False), mix.template(info.speakers) if mixable else "")  # fmt: skip

    def unload(self):
        import gradio as gr

        self.service.unload()
        return (
            "Voice unloaded.",
            gr.update(choices=[], value=None),
            gr.update(interactive=False, value=False),
        )

    def refresh(self):
        import gradio as gr

        choices = self.model_choices()
        d_models, d_configs = self.diffusion_names()
        return (gr.update(choices=choices, value=choices[0][1] if choices else None),
                gr.update(choices=self.cluster_names(), value=NONE),
                gr.update(choices=d_models, value=d_models[min(1, len(d_models) - 1)]),
                gr.update(choices=d_configs, value=d_configs[min(1, len(d_configs) - 1)]))  # fmt: skip

    # -- conversion -----------------------------------------------------------------------------
    def _options(self, values) -> ConvertOptions:
        kw = dict(zip(SETTING_NAMES, values))
        for k in ("trans", "slice_db", "enhancer_adaptive_key", "k_step"):
            kw[k] = int(round(float(kw[k] or 0)))
        kw["speaker"] = kw["speaker"] or ""
        return ConvertOptions(**kw)

    def convert(self, audio_path, mix_text, *values, progress=None):
        try:
            if not audio_path:
                raise ValueError("upload or record some audio first")
            return self._convert(audio_path, Path(audio_path).name, mix_text, values, progress)
        except Exception as e:  # noqa: BLE001
            return self._fail(e), None, None, None, None

    def convert_text(self, text, voice, gender, wpm, mix_text, *values, progress=None):
        try:
            wav = tts.synthesize(text, self._tmp_file(".wav"), voice, gender, int(wpm))
            return self._convert(wav, "tts.wav", mix_text, values, progress)
        except Exception as e:  # noqa: BLE001
            return self._fail(e), None, None, None, None

    def _convert(self, audio_path, clean_name, mix_text, values, progress):
        opts = self._options(values)
        mix_map = mix.parse(mix_text) if opts.use_spk_mix else None

        def tick(done, total):
            if progress is not None:
                progress((done, max(total, 1)), desc=f"slice {done}/{total}", unit="slices")

        res = self.service.convert(audio_path, opts, clean_name, spk_mix_map=mix_map, progress=tick)
        f_in, f_out, frame_s = self.service.f0_curves(res.input_wav, res.audio, opts.f0_predictor,
                                                      opts.f0_filter_threshold)  # fmt: skip
        f0_png = plots.plot_f0(f_in, f_out, frame_s, self._tmp_file(".png"), opts.trans)
        spec_png = plots.plot_spectrograms(
            res.input_wav, res.audio, res.sampling_rate, self._tmp_file(".png")
        )
        dur = len(res.audio) / res.sampling_rate
        msg = f"Wrote results/{res.name} ({dur:.2f} s of audio in {res.seconds:.2f} s)"
        return msg, str(res.path), str(res.path), f0_png, spec_png

    def merge(self, names, uploads, upload_config, rates_text, mode, out_name):
        """Static merge (the Voice mix tab's :meth:`webui.mix_tab.MixTab.merge`)."""
        return self.mix_tab.merge(names, uploads, upload_config, rates_text, mode, out_name)

    def set_debug(self, value):
        self.debug = bool(value)

    # -- layout ---------------------------------------------------------------------------------
    def build(self):
        """The gr.Blocks app (call ``.queue().launch(...)`` or use :func:`launch`)."""
        os.environ["GRADIO_TEMP_DIR"] = str(self.tmp / "gradio")
        import gradio as gr

        d = ConvertOptions()
        choices = self.model_choices()
        with gr.Blocks(title="so-vits-svc 4.1") as demo:
            gr.Markdown("## so-vits-svc 4.1: singing voice conversion")
            with gr.Tab("Convert", elem_id="tab_convert"):
                with gr.Group():
                    gr.Markdown("### Voice")
                    with gr.Row():
                        source = gr.Radio(["local", "upload"], value="local", label="Model source",
                                          info="local: logs/44k/G_*.pth, trained/<name>/ and the shipped pretrain/<name>/",
                                          elem_id="model_source")  # fmt: skip
                        device = gr.Dropdown(
                            list_devices(), value="Auto", label="Device", elem_id="device"
                        )
                        enhance = gr.Checkbox(False, label="NSF-HiFiGAN enhancer", elem_id="enhance",
                                              info="needs pretrain/nsf_hifigan/")  # fmt: skip
                    with gr.Row(visible=True) as local_row:
                        local_name = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Voice",
                                                 elem_id="local_model", scale=3)  # fmt: skip
                        refresh = gr.Button("Refresh lists", scale=1)
                    with gr.Row(visible=False) as upload_row:
                        up_model = gr.File(
                            label="Model (.pth)", file_types=[".pth"], elem_id="upload_model"
                        )
                        up_config = gr.File(
                            label="Config (.json)", file_types=[".json"], elem_id="upload_config"
                        )
                    with gr.Row():
                        cluster_name = gr.Dropdown(self.cluster_names(), value=NONE, elem_id="cluster_name",
                                                   label="Cluster model (.pt) or feature index (.npz)")  # fmt: skip
                        cluster_upload = gr.File(label="... or upload one", file_types=[".pt", ".npz"],
                                                 elem_id="cluster_upload")  # fmt: skip
                    # shallow diffusion (inference_main.py -shd/-od, -dm/-dc); shown when installed
                    d_models, d_configs = self.diffusion_names()
                    with gr.Row(visible=hooks.diffusion_available(), elem_id="diffusion_row"):
                        with gr.Column():
                            diff_name = gr.Dropdown(d_models, value=d_models[min(1, len(d_models) - 1)],
                                                    label="Diffusion model (logs/44k/diffusion/, -dm)",
                                                    elem_id="diffusion_name")  # fmt: skip
                            diff_upload = gr.File(label="... or upload one (.pt)", file_types=[".pt"],
                                                  elem_id="diffusion_model")  # fmt: skip
                        with gr.Column():
                            diff_cfg_name = gr.Dropdown(d_configs, value=d_configs[min(1, len(d_configs) - 1)],
                                                        label="Diffusion config (-dc)", elem_id="diffusion_config_name")  # fmt: skip
                            diff_cfg_upload = gr.File(label="... or upload one (.yaml)", file_types=[".yaml"],
                                                      elem_id="diffusion_config")  # fmt: skip
                        with gr.Column():
                            shallow = gr.Checkbox(False, label="Shallow diffusion (-shd; replaces the enhancer)",
                                                  elem_id="shallow_diffusion")  # fmt: skip
                            only = gr.Checkbox(False, label="Only diffusion (-od; the so-vits model is not used)",
                                               elem_id="only_diffusion")  # fmt: skip
                    backend = gr.Radio(["torch", "onnx"], value="torch", elem_id="backend",
                                       label="Synthesizer backend (--backend; onnx: ONNX Runtime, exported on "
                                             "first use into <model folder>/onnx_cache/)")  # fmt: skip
                    with gr.Row():
                        load_btn = gr.Button("Load voice", variant="primary", elem_id="load_btn")
                        unload_btn = gr.Button("Unload voice", elem_id="unload_btn")
                        speaker = gr.Dropdown([], label="Speaker", elem_id="speaker")
                    load_msg = gr.Textbox(
                        label="Voice status", interactive=False, elem_id="load_msg"
                    )

                gr.Markdown("### Settings (defaults are inference_main.py's)")
                with gr.Row():
                    with gr.Column():
                        trans = gr.Number(
                            d.trans, label="Transpose (semitones, -t)", precision=0, elem_id="trans"
                        )
                        auto_f0 = gr.Checkbox(d.auto_predict_f0, label="Auto-predict f0 (-a; speech only, "
                                              "makes singing go off key)", elem_id="auto_f0")  # fmt: skip
                        f0p = gr.Dropdown(list(F0_PREDICTORS), value=d.f0_predictor, label="f0 predictor (-f0p)",
                                          info="rmvpe needs pretrain/rmvpe.pt; fcpe and crepe ship with the install",
                                          elem_id="f0p")  # fmt: skip
                        cr = gr.Slider(0, 1, value=d.cluster_infer_ratio, step=0.01, elem_id="cluster_ratio",
                                       label="Cluster / retrieval ratio (-cr; needs a cluster file)")  # fmt: skip
                        slice_db = gr.Number(d.slice_db, label="Silence threshold dB (-sd)", precision=0,
                                             elem_id="slice_db")  # fmt: skip
                        wav_format = gr.Dropdown(list(OUTPUT_FORMATS), value=d.wav_format, elem_id="wav_format",
                                                 label="Output format (-wf)")  # fmt: skip
                    with gr.Column():
                        ns = gr.Number(
                            d.noice_scale, label="Noise scale (-ns)", elem_id="noise_scale"
                        )
                        pad = gr.Number(
                            d.pad_seconds, label="Pad seconds per slice (-p)", elem_id="pad_seconds"
                        )
                        clip = gr.Number(
                            d.clip, label="Forced clip length s, 0 = off (-cl)", elem_id="clip"
                        )
                        lg = gr.Number(
                            d.linear_gradient, label="Crossfade between clips s (-lg)", elem_id="lg"
                        )
                        lgr = gr.Number(
                            d.linear_gradient_retain,
                            label="Crossfade kept 0-1 (-lgr)",
                            elem_id="lgr",
                        )
                    with gr.Column():
                        eak = gr.Number(d.enhancer_adaptive_key, label="Enhancer adaptive key (-eak)",
                                        precision=0, elem_id="eak")  # fmt: skip
                        ft = gr.Number(d.f0_filter_threshold, label="f0 threshold, crepe/rmvpe/fcpe (-ft)",
                                       elem_id="f0_threshold")  # fmt: skip
                        lea = gr.Slider(0, 1, value=d.loudness_envelope_adjustment, step=0.01, elem_id="lea",
                                        label="Loudness envelope (-lea; 1 = output's own, 0 = input's)")  # fmt: skip
                        use_mix = gr.Checkbox(False, label="Dynamic voice mix (timeline in the Voice mix tab, -usm)",
                                              interactive=False, elem_id="use_spk_mix")  # fmt: skip
                        # shallow-diffusion settings (used with shallow diffusion / only diffusion)
                        k_step = gr.Slider(1, 1000, value=d.k_step, step=1, label="Diffusion steps (-ks)",
                                           visible=hooks.diffusion_available(), elem_id="k_step")  # fmt: skip
                        second = gr.Checkbox(d.second_encoding, label="Second encoding (-se)",
                                             visible=hooks.diffusion_available(), elem_id="second_encoding")  # fmt: skip
                settings = [speaker, trans, auto_f0, f0p, cr, slice_db, wav_format, ns, pad, clip, lg, lgr, eak,
                            ft, lea, k_step, second, use_mix]  # fmt: skip

                gr.Markdown("### Input")
                with gr.Tab("Audio"):
                    audio_in = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio to convert",
                                        elem_id="input_audio")  # fmt: skip
                    convert_btn = gr.Button("Convert", variant="primary", elem_id="convert_btn")
                with gr.Tab("Text (espeak-ng)", visible=tts.available(), elem_id="tab_tts"):
                    tts_text = gr.Textbox(label="Text", lines=3, elem_id="tts_text")
                    with gr.Row():
                        tts_voice = gr.Dropdown(
                            list(tts.VOICES), value="en", label="Language / voice"
                        )
                        tts_gender = gr.Radio(list(tts.GENDERS), value="female", label="Voice")
                        tts_rate = gr.Slider(80, 300, value=160, step=10, label="Words per minute")
                    tts_btn = gr.Button("Speak and convert", variant="primary", elem_id="tts_btn")

                gr.Markdown("### Result")
                convert_msg = gr.Textbox(
                    label="Conversion status", interactive=False, elem_id="convert_msg"
                )
                with gr.Row():
                    audio_out = gr.Audio(
                        label="Output", type="filepath", interactive=False, elem_id="output_audio"
                    )
                    file_out = gr.File(label="Download", interactive=False, elem_id="output_file")
                f0_img = gr.Image(label="f0 of input and output (notes)", type="filepath", interactive=False,
                                  elem_id="f0_plot")  # fmt: skip
                spec_img = gr.Image(
                    label="Spectrograms", type="filepath", interactive=False, elem_id="spec_plot"
                )

            mix_text = self.mix_tab.build(choices, local_name)
            self.tools.build(choices)
            RealtimeTab(self).build()

            debug = gr.Checkbox(
                False, label="Debug: print tracebacks to the console", elem_id="debug"
            )

            # events
            source.change(lambda s: (gr.update(visible=s == "local"), gr.update(visible=s == "upload")),
                          source, [local_row, upload_row])  # fmt: skip
            refresh.click(self.refresh, None, [local_name, cluster_name, diff_name, diff_cfg_name])
            load_btn.click(self.load, [source, local_name, up_model, up_config, cluster_name, cluster_upload, device,
                                       enhance, diff_name, diff_upload, diff_cfg_name, diff_cfg_upload, shallow,
                                       only, backend], [load_msg, speaker, use_mix, mix_text])  # fmt: skip
            unload_btn.click(self.unload, None, [load_msg, speaker, use_mix])
            outs = [convert_msg, audio_out, file_out, f0_img, spec_img]

            def run_audio(audio_path, mix_value, *values, progress=gr.Progress()):  # noqa: B008
                return self.convert(audio_path, mix_value, *values, progress=progress)

            def run_text(text, voice, gender, wpm, mix_value, *values, progress=gr.Progress()):  # noqa: B008
                return self.convert_text(
                    text, voice, gender, wpm, mix_value, *values, progress=progress
                )

            convert_btn.click(run_audio, [audio_in, mix_text, *settings], outs)
            tts_btn.click(
                run_text, [tts_text, tts_voice, tts_gender, tts_rate, mix_text, *settings], outs
            )
            debug.change(self.set_debug, debug, None)
        return demo

    def launch(self, host: str = "127.0.0.1", port: int = 7860, share: bool = False, max_file_size: str = "200mb",
               block: bool = True, open_browser: bool = False):  # fmt: skip
        """Build and serve; returns the Blocks (with ``block=False`` the server runs in a thread).

        Gradio's own start-up lines (which tell a Python caller to set ``share=True`` in
        ``launch()``) are replaced by :func:`startup_message`, which names this script's flags.
        """
        import gradio as gr

        demo = self.build()
        theme = gr.themes.Default(
            font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
        )
        allowed = [self.root / d for d in (paths.RESULTS_DIR, paths.COMPRESSED_DIR, "trained")] + [
            self.tmp
        ]
        try:
            demo.queue(default_concurrency_limit=1).launch(
                server_name=host, server_port=port, share=share, inbrowser=open_browser, max_file_size=max_file_size,
                allowed_paths=[str(p) for p in allowed], prevent_thread_lock=True, theme=theme, quiet=True,
                footer_links=[],
            )  # fmt: skip
            if block:
                url = demo.local_url
                print(startup_message(url, host, demo.share_url if share else None), flush=True)
                demo.block_thread()  # until Ctrl-C / SIGTERM
        except KeyboardInterrupt:  # Ctrl-C / SIGTERM while still starting: close, end normally
            if not block:
                raise
            demo.close()
        return demo

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def startup_message(local_url: str, host: str, share_url: str | None) -> str:
    """What ``webUI.py`` prints once it serves: the address, and how to reach it from elsewhere
    with this script's own flags (``--host``, ``--share``)."""
    lines = [f"* Running on {local_url}"]
    if share_url:
        lines.append(f"* Public link (temporary, through Gradio's servers): {share_url}")
    elif host in ("127.0.0.1", "localhost", "::1"):
        lines.append("* This machine only. From your network: python webUI.py --host 0.0.0.0; "
                     "a temporary public link (needs the internet): python webUI.py --share")  # fmt: skip
    else:
        lines.append(f"* Listening on {host} (reachable from your network); a temporary public "
                     "link (needs the internet): python webUI.py --share")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``webUI.py``: ``--host`` (127.0.0.1), ``--port`` (7860), ``--share`` (off)."""
    import argparse

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    p = argparse.ArgumentParser(description="so-vits-svc 4.1 web UI")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=7860)
    p.add_argument(
        "--share",
        action="store_true",
        help="Gradio share link (needs the internet; off by default)",
    )
    p.add_argument("--max_file_size", default="200mb", help="upload size limit, e.g. 200mb")
    p.add_argument("--max_seconds", type=float, default=600.0, help="longest input accepted (s)")
    p.add_argument("--open", action="store_true", help="open a browser tab")
    args = p.parse_args(argv)
    check_server_flags(args.port, args.max_seconds, max_file_size=args.max_file_size)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own start-up requests
    ui = WebUI(".", max_seconds=args.max_seconds)
    atexit.register(ui.cleanup)
    # SIGTERM (kill, systemd, docker stop) ends the UI like Ctrl-C: the server closes, launch
    # returns and atexit removes the upload folder (the default SIGTERM skips atexit)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    ui.launch(
        args.host, args.port, args.share, args.max_file_size, block=True, open_browser=args.open
    )
    return 0
