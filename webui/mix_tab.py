"""The web UI's **Voice mix** tab: static merge of checkpoints into ``trained/<name>/`` and the
dynamic mix timeline editor (``spkmix.py``, :mod:`webui.mix`) that "Dynamic voice mix" uses.

Listed voices, shipped ones (``pretrain/<name>``) included, are read, never written: a merge is
always a new ``trained/<name>/`` folder (:func:`webui.tools.merge_voices`).
"""

from __future__ import annotations

from pathlib import Path

from webui import mix, paths, plots, tools

MAX_RATE_PERCENT = 10_000  # merge rates (percent); softmax(rates/100) in float32 needs them bounded


class MixTab:
    """Handlers and layout of the Voice mix tab over a :class:`webui.app.WebUI`."""

    def __init__(self, ui):
        self.ui = ui

    def mix_template(self):
        try:
            return mix.template(self.ui.service.require().spk2id), "Template for the loaded voice."
        except Exception as e:  # noqa: BLE001
            return "", self.ui._fail(e)

    def mix_load(self):
        p = self.ui.root / "spkmix.py"
        if not p.is_file():
            return "", "Error: spkmix.py not found in the project folder"
        return p.read_text(encoding="utf-8"), f"Loaded {p.name}."

    def mix_check(self, text):
        try:
            svc = self.ui.service.require()
            _, weights = mix.check(svc, text)
            names = [svc.speaker_name(i) or str(i) for i in range(weights.shape[0])]
            return plots.plot_spk_mix(weights, names, self.ui._tmp_file(".png")), "Timeline OK."
        except Exception as e:  # noqa: BLE001
            return None, self.ui._fail(e)

    def mix_save(self, text):
        try:
            if self.ui.service.svc is not None:
                mix.check(self.ui.service.svc, text)
            return f"Saved {mix.save(self.ui.root, text).name} (inference_main.py -usm reads it)."
        except Exception as e:  # noqa: BLE001
            return self.ui._fail(e)

    def merge_rates(self, names, uploads):
        import json

        keys = list(names or []) + [Path(u).name for u in (uploads or [])]
        return json.dumps({k: 100 for k in keys}, ensure_ascii=False)

    def merge(self, names, uploads, upload_config, rates_text, mode, out_name):
        import json

        import gradio as gr

        try:
            entries = [paths.find_model(self.ui.root, n) for n in (names or [])]
            sources = [(e.name, e.model) for e in entries] + [
                (Path(u).name, u) for u in (uploads or [])
            ]
            rates_text = rates_text or "{}"
            if len(rates_text) > 64_000:
                raise ValueError(f"rates: {len(rates_text)} characters; at most 64000")
            try:
                rates_map = json.loads(rates_text)
            except json.JSONDecodeError as e:
                raise ValueError(f"rates: not valid JSON ({e.msg})") from None
            except RecursionError:
                raise ValueError('rates: nested too deep; give {"name": percent, ...}') from None
            if not isinstance(rates_map, dict):
                raise ValueError('rates: give a JSON object {"name": percent, ...}')
            rates = []
            for key, _ in sources:
                value = rates_map.get(key, 100)
                if not isinstance(value, (int, float)) or isinstance(value, bool):
                    raise ValueError(f"rates: {key} must be a number (percent)")
                if not 0 <= value <= MAX_RATE_PERCENT:  # also NaN / Infinity
                    raise ValueError(
                        f"rates: {key} is {value}; a rate is a percentage in 0..{MAX_RATE_PERCENT}"
                    )
                rates.append(float(value))
            config = upload_config or (entries[0].config if entries else None)
            out = tools.merge_voices(
                self.ui.root, [m for _, m in sources], rates, mode, config, out_name
            )
            rel = out.relative_to(self.ui.root).as_posix()
            return (
                f"Merged {len(sources)} checkpoints into {rel}",
                str(out),
                gr.update(choices=self.ui.model_choices()),
            )
        except Exception as e:  # noqa: BLE001
            return self.ui._fail(e), None, gr.update()

    def build(self, choices: list[tuple[str, str]], local_name):
        """The tab's components and events (call inside ``gr.Blocks``); ``local_name`` is the
        Convert tab's voice list (refreshed after a merge). Returns the timeline editor
        (``mix_text``), which loading and converting use too."""
        import gradio as gr

        with gr.Tab("Voice mix", elem_id="tab_mix"):
            gr.Markdown("### Static merge (convex: softmax of rates/100; linear: rates/100)")
            with gr.Row():
                merge_names = gr.CheckboxGroup(
                    choices, label="Listed voices", elem_id="merge_names"
                )
                merge_uploads = gr.File(label="... and/or upload checkpoints", file_count="multiple",
                                        file_types=[".pth"], elem_id="merge_uploads")  # fmt: skip
                merge_config = gr.File(label="Config for the merged voice (default: the first listed voice's)",
                                       file_types=[".json"], elem_id="merge_config")  # fmt: skip
            merge_rates = gr.Textbox(
                "{}", label="Rates in percent {voice: percent}", elem_id="merge_rates"
            )
            with gr.Row():
                merge_mode = gr.Radio(
                    ["convex", "linear"], value="convex", label="Mode", elem_id="merge_mode"
                )
                merge_out = gr.Textbox(
                    "merged", label="Name (written to trained/<name>/)", elem_id="merge_name"
                )
            merge_btn = gr.Button("Merge", variant="primary", elem_id="merge_btn")
            merge_msg = gr.Textbox(label="Merge status", interactive=False, elem_id="merge_msg")
            merge_file = gr.File(label="Merged checkpoint", interactive=False, elem_id="merge_file")

            gr.Markdown(
                "### Dynamic mix timeline (spkmix.py): `{speaker: [[t_start, t_end, v_start, v_end], ...]}`"
            )
            mix_text = gr.Code("", language="python", label="spk_mix_map", elem_id="mix_text")
            with gr.Row():
                mix_tpl = gr.Button("Template for the loaded voice")
                mix_load_btn = gr.Button("Load spkmix.py")
                mix_check_btn = gr.Button("Check and preview", elem_id="mix_check_btn")
                mix_save_btn = gr.Button("Save to spkmix.py")
            mix_msg = gr.Textbox(label="Timeline status", interactive=False, elem_id="mix_msg")
            mix_img = gr.Image(label="Weights over the output", type="filepath", interactive=False,
                               elem_id="mix_plot")  # fmt: skip
        merge_names.change(self.merge_rates, [merge_names, merge_uploads], merge_rates)
        merge_uploads.change(self.merge_rates, [merge_names, merge_uploads], merge_rates)
        merge_btn.click(self.merge, [merge_names, merge_uploads, merge_config, merge_rates, merge_mode, merge_out],
                        [merge_msg, merge_file, local_name])  # fmt: skip
        mix_tpl.click(self.mix_template, None, [mix_text, mix_msg])
        mix_load_btn.click(self.mix_load, None, [mix_text, mix_msg])
        mix_check_btn.click(self.mix_check, mix_text, [mix_img, mix_msg])
        mix_save_btn.click(self.mix_save, mix_text, mix_msg)
        return mix_text
