"""The web UI's **Realtime** tab: the browser's microphone → :class:`inference.realtime.StreamSession`
over the voice loaded in the Convert tab → playback in the same page, with the algorithmic latency,
the per-block compute time (last / p95), the blocks over budget and the seconds captured and
converted shown live.

How the audio travels (Gradio 6.31):

- **in**: ``gr.Audio(sources=["microphone"], streaming=True)`` and its ``.stream`` event. Gradio's
  recorder sends a chunk every 0.1 s whatever the event's ``stream_every`` says (its audio
  component sets 0.1 itself); each chunk is a 16-bit PCM wav at the browser's capture rate whose
  header gives placeholder sizes (2^32 - 45 data bytes: :func:`read_wav_chunk` reads to the end).
  Chunks recorded while the previous one is being converted are sent together with the next;
  the recorder drops those of the moment before the stream opens and after Stop.
- **out**: the converted pieces go to the page as JSON text in a hidden textbox whose ``.change``
  runs :data:`PLAYER_JS` in the browser: it queues the samples gap-free in a Web Audio
  ``AudioContext`` and counts what it received. Gradio fires ``.change`` once for several updates
  that land together, so each update carries every piece the page has not acknowledged yet (the
  player writes the last piece it queued into a hidden ``ack`` box that goes back with the next
  chunk), and the player skips pieces it already has. (A streaming ``gr.Audio`` output needs
  ffmpeg on the server, which this project does not install: Gradio encodes the chunks to AAC
  and the page plays them as an HLS playlist of segments, more delay on top.)

One :class:`RealtimeSlot` per browser tab (``gr.State``): at Record its engine is built over the
loaded voice with the tab's settings and warmed up, its session opens on the first chunk (at the
browser's rate); both are rebuilt (the old session flushed first) when a setting or the voice
changes, and flushed and dropped when recording stops. The engine's blocks
are converted under the voice service's lock (never at the same time as a conversion in the
Convert tab).
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import uuid
from pathlib import Path

import numpy as np

NO_VOICE = "No voice loaded: load one in the Convert tab first (the Realtime tab uses it)."
# pieces re-sent at most (each is what one chunk brought, about 0.1 s): a page whose player does
# not confirm (JavaScript off or failing) gets the newest ones, not an ever-growing update
MAX_UNACKED = 20
IDLE = "Press Record: the microphone is converted with the voice loaded in the Convert tab."

# The browser side of the output. ``payload``: ``{"id", "rate", "pieces": [[seq, base64 int16 LE],
# ...]}`` (``id``: the recording). New pieces are queued one after the other in an AudioContext (a
# short lead when the queue ran dry); returns the "Played in this page" line and the ack
# (``<id>:<last seq queued>``).
PLAYER_JS = """(payload) => {
  const P = (window.sovitsRealtime ??= {ctx: null, t: 0, id: "", seq: -1, received: 0, rate: 0, pieces: 0, lost: 0, peak: 0});
  const line = () => P.rate ? `received ${(P.received / P.rate).toFixed(3)} s of converted audio in ${P.pieces} pieces (${P.lost} lost)` : "Nothing received yet.";
  if (!payload) return [line(), ""];
  const m = JSON.parse(payload);
  if (m.id !== P.id) Object.assign(P, {id: m.id, seq: -1, received: 0, pieces: 0, lost: 0, peak: 0});
  P.rate = m.rate;
  for (const [seq, b64] of m.pieces) {
    if (seq <= P.seq) continue;
    P.lost += seq - P.seq - 1;
    P.seq = seq;
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const pcm = new Int16Array(bytes.buffer, 0, bytes.length >> 1);
    P.received += pcm.length; P.pieces += 1;
    if (!pcm.length) continue;
    try {
      P.ctx ??= new AudioContext();
      if (P.ctx.state === "suspended") P.ctx.resume();
      const buf = P.ctx.createBuffer(1, pcm.length, m.rate);
      const ch = buf.getChannelData(0);
      for (let i = 0; i < pcm.length; i++) { ch[i] = pcm[i] / 32768; P.peak = Math.max(P.peak, Math.abs(ch[i])); }
      const src = P.ctx.createBufferSource();
      src.buffer = buf; src.connect(P.ctx.destination);
      const now = P.ctx.currentTime;
      if (P.t < now + 0.01) P.t = now + 0.1;
      src.start(P.t); P.t += pcm.length / m.rate;
    } catch (e) { console.error("realtime playback", e); }
  }
  return [line(), `${P.id}:${P.seq}`];
}"""


def read_wav_chunk(path: str | Path) -> tuple[int, np.ndarray]:
    """One streamed chunk (a wav file) → ``(rate, float32 mono [n])``.

    Reads the ``fmt `` chunk (PCM 8/16/24/32-bit or float 32/64, any channel count, mixed down)
    and takes everything after the ``data`` header as samples, whatever size the header states
    (the browser's recorder writes a stream: a placeholder there); a trailing partial frame is
    dropped. A chunk that is not a wav raises ``ValueError``.
    """
    raw = Path(path).read_bytes()
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise ValueError("microphone chunk: not a wav file")
    pos, fmt = 12, b""
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], struct.unpack("<I", raw[pos + 4 : pos + 8])[0]
        body = raw[pos + 8 : pos + 8 + size]
        if cid == b"fmt " and len(body) >= 16:
            fmt = body
        elif cid == b"data" and fmt:
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
            if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                tag = struct.unpack("<H", fmt[24:26])[0]
            frame = max(bits // 8, 1) * max(channels, 1)
            data = raw[pos + 8 :]  # to the end: the stated size may be 0 or a placeholder
            x = _pcm(data[: len(data) // frame * frame], tag, bits)
            return int(rate), x.reshape(-1, max(channels, 1)).mean(axis=1, dtype=np.float32)
        pos += 8 + size + (size & 1)
    raise ValueError("microphone chunk: a wav without fmt/data")


def _pcm(data: bytes, tag: int, bits: int) -> np.ndarray:
    """Little-endian PCM bytes → float32 in [-1, 1]."""
    if tag == 3 and bits in (32, 64):
        return np.frombuffer(data, f"<f{bits // 8}").astype(np.float32)
    if bits == 8:
        return (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
    if bits == 16:
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768
    if bits == 24:
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        v = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
        return v.astype(np.float32) / 8388608
    if bits == 32:
        return (np.frombuffer(data, "<i4").astype(np.float64) / 2147483648).astype(np.float32)
    raise ValueError(f"microphone chunk: {bits}-bit samples are not supported")


def encode_piece(y: np.ndarray) -> str:
    """float32 ``[n]`` → base64 of int16 little-endian (what :data:`PLAYER_JS` decodes)."""
    pcm = (np.clip(y, -1.0, 1.0) * 32767).round().astype("<i2")
    return base64.b64encode(pcm.tobytes()).decode("ascii")


class RealtimeSlot:
    """One browser tab's stream (kept in ``gr.State``): the session, what it was built from, and
    the counts (samples at the browser's rate, in and out)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.stopped = False  # Stop was pressed: chunks still in flight are dropped until Record
        self.clear()

    def clear(self) -> None:
        self.session = self.engine = self.svc = self.key = None
        self.rate = 0
        self.id = uuid.uuid4().hex[:12]  # this recording, for the page's player
        self.seq = 0  # the next piece's number
        self.unacked: list[tuple[int, str]] = []  # (seq, base64) the page has not confirmed
        self.captured = self.converted = 0
        self.error = ""
        self.past: list[float] = []  # compute s per block of the engines this recording closed
        self.past_over = 0  # their blocks over budget
        self.latency = self.budget = 0.0  # s: the last engine's latency and block duration

    def compute(self) -> list[float]:
        """Compute time (s) of every block of this recording, in order."""
        now = self.engine.stats.get("compute_s", []) if self.engine is not None else []
        return self.past + list(now)

    def over(self) -> int:
        """Blocks of this recording whose compute took longer than their block lasts."""
        now = self.engine.stats.get("compute_s", []) if self.engine is not None else []
        return self.past_over + sum(c > self.budget for c in now)

    def __deepcopy__(self, memo):  # gr.State copies its default value per browser tab
        return RealtimeSlot()


class RealtimeTab:
    """Handlers and layout of the Realtime tab over a :class:`webui.app.WebUI` (its voice service
    and error formatting)."""

    def __init__(self, ui):
        self.ui = ui

    # -- handlers -------------------------------------------------------------------------------
    def speakers(self, current=None, status=""):
        """Refresh the speaker list from the loaded voice (when the tab is opened); the speaker
        picked stays if the voice has it, the status line unless it said no voice was loaded."""
        import gradio as gr

        info = self.ui.service.info
        if info is None or not info.speakers:
            return gr.update(choices=[], value=None), NO_VOICE
        spk = list(info.speakers)
        line = IDLE if status == NO_VOICE else gr.update()
        return gr.update(choices=spk, value=current if current in spk else spk[0]), line

    def _config(self, speaker, transpose, f0_predictor, block, crossfade, extra, threshold):
        from inference.realtime import StreamConfig

        service = self.ui.service
        name = service.speaker_name(speaker or "", "Speaker")
        return StreamConfig(block_time=float(block), crossfade_time=float(crossfade), extra_time=float(extra),
                            threshold_db=float(threshold), speaker=name, transpose=float(transpose or 0),
                            f0_predictor=f0_predictor)  # fmt: skip

    def _finish(self, slot: RealtimeSlot) -> np.ndarray:
        """Flush the slot's session (the rest of its delayed output) and drop it."""
        y = np.zeros(0, np.float32)
        if slot.session is not None:
            with self.ui.service.lock:
                y = np.asarray(slot.session.flush(), np.float32)
        slot.past_over = slot.over()
        slot.past = slot.compute()
        slot.session = slot.engine = slot.svc = slot.key = None
        return y

    def _engine(self, slot: RealtimeSlot, key: tuple) -> None:
        """A warmed-up engine over the loaded voice with the settings ``key`` (its first
        conversions build kernels and caches: done here, not as the first blocks' compute)."""
        from inference.realtime import StreamEngine

        svc = self.ui.service.require()
        cfg = self._config(*key)
        with self.ui.service.lock:
            engine = StreamEngine(svc, cfg)
            engine.warmup()
        slot.engine, slot.svc, slot.key = engine, svc, key
        slot.latency, slot.budget = engine.latency_s, engine.block_samples / engine.sample_rate

    def _open(self, slot: RealtimeSlot, rate: int, key: tuple) -> None:
        """The slot's session at the browser's ``rate`` (its engine built unless Record built it
        with these settings for this voice)."""
        from inference.realtime import StreamSession

        if slot.engine is None or slot.key != key or slot.svc is not self.ui.service.svc:
            self._engine(slot, key)
        slot.session = StreamSession(slot.engine, input_rate=rate, output_rate=rate)
        slot.rate = rate

    def start(self, slot: RealtimeSlot, *settings):
        """Record pressed: a new recording (the previous one was flushed at Stop); the engine is
        built and warmed up now, while the browser opens the microphone."""
        with slot.lock:
            if slot.session is None:  # (unless the first chunk came first and opened it)
                slot.clear()
            slot.stopped = False
            if self.ui.service.svc is None:
                return NO_VOICE
            try:
                if slot.engine is None:
                    self._engine(slot, tuple(settings))
                return "Recording. " + self.status(slot)
            except Exception as e:  # noqa: BLE001
                slot.error = self.ui._fail(e)
                return slot.error

    def stream(self, chunk, slot: RealtimeSlot, ack: str, *settings):
        """One microphone chunk (a wav path) → ``(status, payload)``; ``ack``: the page player's
        ``<recording id>:<last piece queued>``; ``settings``: speaker, transpose, f0 predictor,
        block s, crossfade s, extra s, threshold dB."""
        import gradio as gr

        with slot.lock:
            if slot.stopped:  # sent before Stop, arrived after it: that recording is closed
                return gr.update(), gr.update()
            try:
                if slot.error:
                    return slot.error, gr.update()
                if chunk is None:
                    return IDLE, gr.update()
                rate, x = read_wav_chunk(chunk)
                svc = self.ui.service.svc
                out = []
                key = tuple(settings)
                if slot.session is not None and (
                    slot.svc is not svc or slot.key != key or slot.rate != rate
                ):
                    out.append(self._finish(slot))  # a setting or the voice changed: start anew
                if svc is None:  # nothing converted, nothing counted
                    return NO_VOICE, self._send(slot, out, ack)
                if slot.session is None:
                    self._open(slot, rate, key)
                with self.ui.service.lock:
                    out.append(np.asarray(slot.session.push(x), np.float32))
                slot.captured += len(x)
                return self.status(slot), self._send(slot, out, ack)
            except Exception as e:  # noqa: BLE001
                slot.error = self.ui._fail(e)
                return slot.error, gr.update()

    def stop(self, slot: RealtimeSlot, ack: str):
        """Recording stopped: flush the session (the delayed rest), report, free it."""
        import gradio as gr

        with slot.lock:
            slot.stopped = True
            try:
                if slot.error:
                    msg, payload = slot.error, gr.update()
                elif slot.session is None and not slot.captured:
                    msg, payload = IDLE, gr.update()
                else:
                    payload = self._send(slot, [self._finish(slot)], ack)
                    msg = "Stopped. " + self.status(slot)
            except Exception as e:  # noqa: BLE001
                msg, payload = self.ui._fail(e), gr.update()
            slot.clear()
            return msg, payload

    def _send(self, slot: RealtimeSlot, pieces: list[np.ndarray], ack: str):
        """The payload for the page: the new piece (``pieces`` joined) and every earlier one
        the page has not acknowledged; no update when the page has everything."""
        import gradio as gr

        y = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
        if len(y):
            slot.converted += len(y)
            slot.unacked.append((slot.seq, encode_piece(y)))
            slot.seq += 1
        rec, _, last = str(ack or "").partition(":")
        if rec == slot.id and last.lstrip("-").isdigit():
            slot.unacked = [(n, b) for n, b in slot.unacked if n > int(last)]
        del slot.unacked[:-MAX_UNACKED]
        if not slot.unacked:
            return gr.update()
        return json.dumps({"id": slot.id, "rate": slot.rate, "pieces": slot.unacked})

    def status(self, slot: RealtimeSlot) -> str:
        """The live line: latency, compute per block (last / p95 against the block's budget),
        blocks over budget, seconds captured and converted (at the browser's rate)."""
        parts = []
        if slot.budget:
            parts.append(
                f"latency {1000 * slot.latency:.0f} ms (block {1000 * slot.budget:.0f} ms)"
            )
        c = slot.compute()
        if c:
            parts.append(f"compute per block last {1000 * c[-1]:.0f} ms / p95 "
                         f"{1000 * np.percentile(c, 95):.0f} ms, {slot.over()} of {len(c)} blocks over budget")  # fmt: skip
        rate = slot.rate or 1
        parts.append(
            f"captured {slot.captured / rate:.3f} s, converted {slot.converted / rate:.3f} s"
        )
        return "; ".join(parts)

    # -- layout ---------------------------------------------------------------------------------
    def build(self):
        """The tab's components and events (call inside ``gr.Blocks``)."""
        import gradio as gr

        from inference.realtime import StreamConfig
        from modules.f0 import F0_PREDICTORS

        d = StreamConfig()
        with gr.Tab("Realtime", elem_id="tab_realtime") as tab:
            gr.Markdown("### Realtime: your microphone in the loaded voice (load it in the Convert tab)\n"
                        "Settings take effect when you press Record (or change one while recording: "
                        "the stream restarts). Use headphones: the converted voice plays in this page.")  # fmt: skip
            with gr.Row():
                speaker = gr.Dropdown([], label="Speaker", elem_id="rt_speaker")
                transpose = gr.Number(d.transpose, label="Transpose (semitones)", precision=0,
                                      minimum=-48, maximum=48, elem_id="rt_transpose")  # fmt: skip
                f0p = gr.Dropdown(list(F0_PREDICTORS), value=d.f0_predictor, label="f0 predictor",
                                  elem_id="rt_f0p")  # fmt: skip
            with gr.Row():
                block = gr.Slider(0.05, 1.0, value=d.block_time, step=0.01, label="Block time (s)",
                                  elem_id="rt_block")  # fmt: skip
                crossfade = gr.Slider(0.01, 0.3, value=d.crossfade_time, step=0.01,
                                      label="Crossfade time (s)", elem_id="rt_crossfade")  # fmt: skip
                extra = gr.Slider(0.1, 5.0, value=d.extra_time, step=0.1,
                                  label="Extra (left context) time (s)", elem_id="rt_extra")  # fmt: skip
                threshold = gr.Slider(-90, 0, value=d.threshold_db, step=1,
                                      label="Silence threshold (dBFS)", elem_id="rt_threshold")  # fmt: skip
            mic = gr.Audio(sources=["microphone"], streaming=True, type="filepath",
                           label="Microphone", elem_id="rt_mic")  # fmt: skip
            status = gr.Textbox(
                IDLE, label="Realtime status", interactive=False, elem_id="rt_status"
            )
            played = gr.Textbox("Nothing received yet.", label="Played in this page", interactive=False,
                                elem_id="rt_played")  # fmt: skip
            payload = gr.Textbox("", visible="hidden", elem_id="rt_payload")
            ack = gr.Textbox("", visible="hidden", elem_id="rt_ack")
            slot = gr.State(RealtimeSlot())
        settings = [speaker, transpose, f0p, block, crossfade, extra, threshold]
        tab.select(self.speakers, [speaker, status], [speaker, status])
        mic.start_recording(self.start, [slot, *settings], [status], show_progress="hidden")
        # the recorder sends every 0.1 s whatever stream_every says; a stream holds its queue slot
        # for as long as it runs, so streams of several tabs are not queued behind each other
        mic.stream(self.stream, [mic, slot, ack, *settings], [status, payload], stream_every=0.1,
                   concurrency_limit=None, show_progress="hidden")  # fmt: skip
        mic.stop_recording(self.stop, [slot, ack], [status, payload], show_progress="hidden")
        payload.change(None, [payload], [played, ack], js=PLAYER_JS)
        return tab
