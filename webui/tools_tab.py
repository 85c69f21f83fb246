"""The web UI's **Tools** tab: compression into ``compressed/`` and ONNX export of the loaded voice
into ``checkpoints/<name>/`` (see :mod:`webui.tools` for the work itself).

Sizes are binary (KiB = 2^10, MiB = 2^20 bytes), the units of the size Gradio prints in the
download box (which labels them "KB", "MB"), so the status line and the box show the same number.
"""

from __future__ import annotations

import html
import os
import shutil
from pathlib import Path

from webui import hooks, paths, tools


def size_text(n_bytes: int) -> str:
    """``n_bytes`` in binary units, as Gradio's download box scales it: ``"76.27 MiB"``,
    ``"92.35 KiB"``, ``"512 B"``."""
    if n_bytes < 1024:
        return f"{n_bytes} B"
    value, unit = n_bytes / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    return f"{value:.2f} {unit}"


class ToolsTab:
    """Handlers and layout of the Tools tab over a :class:`webui.app.WebUI` (its root, service,
    voice list and error formatting)."""

    def __init__(self, ui):
        self.ui = ui

    def compress(self, source, local_name, up_model, up_config, half):
        """Compress a listed voice (shipped ones too: read, never written) or an upload into
        ``compressed/<stem>_release[_half].pth``; returns ``(status, file)``."""
        root = self.ui.root
        try:
            if source == "upload":
                model, config, stem = up_model, up_config, Path(up_model or "model").stem
            else:
                entry = paths.find_model(root, local_name or "")
                model, config = entry.model, entry.config
                stem = (
                    entry.model.stem
                    if entry.name.startswith("logs/")
                    else entry.name.split("/", 1)[1]
                )
            out = tools.compress_voice(root, model, config, bool(half), stem)
            size_in, size_out = os.path.getsize(model), os.path.getsize(out)
            rel = out.relative_to(root).as_posix()
            return (f"Wrote {rel}: {size_text(size_out)} ({100 * size_out / size_in:.0f}% of {size_text(size_in)})",
                    str(out))  # fmt: skip
        except Exception as e:  # noqa: BLE001
            return self.ui._fail(e), None

    def onnx_export(self, name):
        """Copy the loaded voice to ``checkpoints/<name>/`` and run ``onnx_export.py -n <name>``."""
        import subprocess
        import sys

        root = self.ui.root
        try:
            svc = self.ui.service.require()
            script = hooks.onnx_export_script()
            if script is None:
                raise ValueError("ONNX export is not available in this build")
            name = paths.safe_name(name, default="model")
            dest = paths.inside(root / "checkpoints", root / "checkpoints" / name)
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(svc.net_g_path, dest / "model.pth")
            shutil.copyfile(self.ui.service.info.config, dest / "config.json")
            proc = subprocess.run([sys.executable, str(script), "-n", name], cwd=root, capture_output=True,
                                  text=True, timeout=1800)  # fmt: skip
            if proc.returncode != 0:
                raise ValueError(
                    (proc.stderr.strip().splitlines() or ["onnx_export.py failed"])[-1]
                )
            onnx = dest / f"{name}_SoVits.onnx"
            if not onnx.is_file():
                raise ValueError(f"onnx_export.py did not write checkpoints/{name}/{onnx.name}")
            return (f"Exported checkpoints/{name}/{onnx.name} ({size_text(onnx.stat().st_size)}) and "
                    f"checkpoints/{name}.json")  # fmt: skip
        except Exception as e:  # noqa: BLE001
            return self.ui._fail(e)

    def build(self, choices: list[tuple[str, str]]):
        """The tab's components and events (call inside ``gr.Blocks``); returns the voice
        dropdown (``c_local``) so the app can refresh it."""
        import gradio as gr

        with gr.Tab("Tools", elem_id="tab_tools"):
            gr.Markdown(
                "### Compress a checkpoint for release (drops enc_q and the optimizer; into compressed/)"
            )
            with gr.Row():
                c_source = gr.Radio(
                    ["local", "upload"], value="local", label="Model source", elem_id="c_source"
                )
                c_local = gr.Dropdown(choices, value=choices[0][1] if choices else None, label="Voice",
                                      elem_id="c_local")  # fmt: skip
                c_half = gr.Checkbox(False, label="float16 (-hf)", elem_id="c_half")
            with gr.Row():
                c_model = gr.File(label="Model (.pth)", file_types=[".pth"], elem_id="c_model")
                c_config = gr.File(label="Config (.json)", file_types=[".json"], elem_id="c_config")
            c_btn = gr.Button("Compress", variant="primary", elem_id="compress_btn")
            c_msg = gr.Textbox(
                label="Compression status (KiB = 2^10, MiB = 2^20 bytes)",
                interactive=False,
                elem_id="compress_msg",
            )
            c_file = gr.File(label="Compressed checkpoint (sizes in 1024s: KB = KiB, MB = MiB)",
                             interactive=False, elem_id="compress_file")  # fmt: skip
            # ONNX export (onnx_export.py -n <name>), shown when onnx_export.py is present
            with gr.Group(visible=hooks.onnx_export_script() is not None, elem_id="onnx_group"):
                # Markdown renders HTML: "<name>" must be escaped or the heading stops there
                gr.Markdown(
                    "### "
                    + html.escape(
                        "ONNX export of the loaded voice (checkpoints/<name>/, for MoeVoiceStudio)"
                    ),
                    elem_id="onnx_heading",
                )
                onnx_name = gr.Textbox("model", label="Name", elem_id="onnx_name")
                onnx_btn = gr.Button("Export ONNX", elem_id="onnx_btn")
                onnx_msg = gr.Textbox(label="Export status", interactive=False, elem_id="onnx_msg")
        c_btn.click(self.compress, [c_source, c_local, c_model, c_config, c_half], [c_msg, c_file])
        onnx_btn.click(self.onnx_export, onnx_name, onnx_msg)
        return c_local
