"""HTTP APIs (FastAPI): the VST plug-in's endpoint, the full-song endpoint and a JSON API.

One app serves all three; ``flask_api.py`` (port 6842) and ``flask_api_full_song.py`` (port 1145)
start it with a model loaded once per process.

- ``POST /voiceChangeModel`` (4.1's flask_api.py, unchanged for the VST plug-in): multipart
  ``sample`` (wav), ``fPitchChange`` (semitones), ``sampleRate`` (the DAW's rate; 0 = the chunk's own rate),
  ``sSpeakId`` (speaker id). Answers a 16-bit wav at that rate with
  exactly as many samples as the chunk (``round(N · sampleRate / chunk rate)``: the same count when
  the rates agree, so consecutive chunks play without a gap; :meth:`VoiceService.infer_chunk`).
  The chunk is converted whole (no silence slicing), cluster ratio 0, noise 0.4, f0 ``pm``, as the
  reference's raw path.
- ``POST /wav2wav`` (4.1's flask_api_full_song.py): multipart ``audio`` (**uploaded**; 4.1 read a
  server path from ``audio_path``, which is refused here), ``tran``, ``spk``, ``wav_format``.
  Silence slicing at -40 dB, pad 0.5 s, answers ``temp.<wav_format>``.
- ``/api/v1/...``: list voices (``shipped: true`` for the read-only ``pretrain/<name>/`` ones, e.g.
  ``pretrain/demo_voice``), diffusion models and speakers, load a listed voice (optionally with
  shallow diffusion / only diffusion and a listed diffusion model + config, or the ONNX Runtime
  backend), convert with every option of :class:`webui.service.ConvertOptions` (``k_step`` and
  ``second_encoding`` apply with diffusion; the output is named ``..._sovdiff_...`` / ``..._diff_...``
  as inference_main.py names it); OpenAPI schema at ``/openapi.json``, page at ``/docs``.

Safety: uploads are limited to ``max_upload_mb`` (413 past it, checked while the body streams in)
and kept in memory; their length is read from the header and refused past ``--max_seconds`` (400)
before decoding; ``fPitchChange`` / ``tran`` are within +-48 semitones and ``sampleRate`` is 0 or
8000..384000; ``spk_mix`` is at most 64 KB, nested at most as deep as its format needs. File names
may be any Unicode: ``Content-Disposition`` carries ``filename*=UTF-8''...`` and ``X-Output-Path``
is percent-encoded past ASCII (decode it with ``urllib.parse.unquote``). Conversions are serialised by the service's lock; client strings never
become paths (voices are picked by listed name, output names go through ``safe_name``); user
mistakes answer 400 with ``{"error": "<one line>"}``.
"""

from __future__ import annotations

import io
import json
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from webui import paths
from webui.service import (
    ConvertOptions,
    ServiceError,
    VoiceService,
    check_server_flags,
    message,
    user_errors,
    validation_message,
)

MEDIA_TYPES = {"wav": "audio/wav", "flac": "audio/flac", "mp3": "audio/mpeg", "ogg": "audio/ogg"}
MAX_SEMITONES = 48.0
DAW_RATES = (8000, 384000)  # sampleRate: 0 (the chunk's own rate) or within these
MAX_SPK_MIX_CHARS = 64_000


def header_text(text: str) -> str:
    """``text`` safe for an HTTP header (latin-1 only): ``%`` and non-ASCII percent-encoded (UTF-8)."""
    from urllib.parse import quote

    return "".join(c if 32 <= ord(c) < 127 and c != "%" else quote(c, safe="") for c in text)


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 5987)."""
    from urllib.parse import quote

    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%' else "_" for c in filename)
    if ascii_name == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes`` (declared or streamed)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._reject(send)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge
            return msg

        async def tracking_send(msg):
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send):
        mb = self.max_bytes / 1e6
        body = json.dumps({"error": f"upload too large: the limit is {mb:.0f} MB"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


class LoadRequest(BaseModel):
    model: str = Field(..., description="a voice name from GET /api/v1/models")
    cluster: str = Field(
        "", description="a cluster / retrieval file name from the same list, or '' (-cm)"
    )
    device: str | None = Field(None, description="'cpu', 'cuda:0' ... or null for auto (-d)")
    enhance: bool = Field(False, description="NSF-HiFiGAN enhancer (-eh)")
    diffusion_model: str = Field(
        "",
        description="a diffusion model name from GET /api/v1/models (logs/44k/diffusion/*.pt), or '' (-dm)",
    )
    diffusion_config: str = Field(
        "",
        description="a diffusion config name from the same list (logs/44k/diffusion/*.yaml), or '' (-dc)",
    )
    shallow_diffusion: bool = Field(False, description="shallow diffusion (-shd)")
    only_diffusion: bool = Field(False, description="diffusion only (-od)")
    backend: Literal["torch", "onnx"] = Field(
        "torch", description="synthesizer in torch or ONNX Runtime"
    )


def http_fields() -> dict[str, str]:
    """inference_main.py's flags → the HTTP field that does the same: ``-shd`` →
    ``shallow_diffusion`` (``/api/v1/load``), ``-a`` → ``options.auto_predict_f0``, from the
    ``(flag)`` in each field's description."""
    import re

    out = {}
    for model, prefix in ((LoadRequest, ""), (ConvertOptions, "options.")):
        for name, field in model.model_fields.items():
            flag = re.search(r"\((-[\w-]+)", field.description or "")
            if flag:
                out.setdefault(flag.group(1), prefix + name)
    return out


def http_message(text: str) -> str:
    """A message written for the CLI, for an HTTP caller: each CLI flag with an HTTP field is
    replaced by that field's name (``(-od)`` → ``(only_diffusion)``, ``-s`` → ``options.speaker``)."""
    import re

    for flag, field in http_fields().items():
        text = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", field, text)
    return text


def _audio_response(audio: np.ndarray, sr: int, fmt: str, filename: str, subtype: str | None = None,
                    headers: dict | None = None) -> Response:  # fmt: skip
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, np.asarray(audio), sr, format=fmt.upper(), subtype=subtype)
    hdrs = {"Content-Disposition": content_disposition(filename), **(headers or {})}
    return Response(
        buf.getvalue(), media_type=MEDIA_TYPES.get(fmt, "application/octet-stream"), headers=hdrs
    )


def _int_field(value: str | None, name: str, default: int = 0) -> int:
    """4.1's ``int(float(x))`` for form numbers, with a 400 for garbage."""
    return int(_float_field(value, name, default))


def _float_field(value: str | None, name: str, default: float = 0.0) -> float:
    if value is None or str(value).strip() == "":
        return float(default)
    try:
        v = float(value)
    except ValueError:
        raise ServiceError(f"{name}: {value!r} is not a number") from None
    if not np.isfinite(v):
        raise ServiceError(f"{name}: must be finite")
    return v


def create_app(service: VoiceService, max_upload_mb: float = 50.0) -> FastAPI:
    """The FastAPI app over ``service`` (which should already hold a voice for the plug-in)."""
    from starlette.formparsers import MultiPartParser

    max_bytes = int(max_upload_mb * 1e6)
    # keep uploads in memory (already bounded by BodyLimit) instead of spooling to the system temp
    MultiPartParser.spool_max_size = max_bytes
    app = FastAPI(
        title="so-vits-svc 4.1 conversion API",
        version="1",
        description="VST endpoint, full-song endpoint and a JSON API for file-in / file-out conversion. "
        "Errors answer 4xx with {'error': message}.",
    )
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    async def _user_error(request: Request, exc: Exception):
        status = 403 if isinstance(exc, paths.PathError) else 400
        return JSONResponse({"error": http_message(message(exc))}, status_code=status)

    for cls in user_errors():
        app.add_exception_handler(cls, _user_error)

    def read_upload(upload: UploadFile | None, field: str) -> bytes:
        if upload is None:
            raise ServiceError(f"no {field!r} file in the form")
        data = upload.file.read()
        if not data:
            raise ServiceError(f"{field}: empty file")
        return data

    # -- 4.1 flask_api.py (VST plug-in) ---------------------------------------------------------
    @app.post(
        "/voiceChangeModel",
        summary="VST plug-in: convert one chunk, answer a wav at the DAW's rate",
    )
    def voice_change_model(
        sample: Annotated[UploadFile, File(description="the chunk (wav)")],
        fPitchChange: Annotated[str | None, Form()] = None,  # noqa: N803
        sampleRate: Annotated[str | None, Form()] = None,  # noqa: N803
        sSpeakId: Annotated[str | None, Form()] = None,  # noqa: N803
    ) -> Response:
        tran = _float_field(fPitchChange, "fPitchChange")
        daw_sr = _int_field(sampleRate, "sampleRate")
        sid = _int_field(sSpeakId, "sSpeakId")
        if abs(tran) > MAX_SEMITONES:
            raise ServiceError(
                f"fPitchChange: {tran:g} is out of range (+-{MAX_SEMITONES:g} semitones)"
            )
        if daw_sr != 0 and not DAW_RATES[0] <= daw_sr <= DAW_RATES[1]:
            raise ServiceError(f"sampleRate: {daw_sr} is not a sample rate (0 = the chunk's own rate, or "
                               f"{DAW_RATES[0]}..{DAW_RATES[1]})")  # fmt: skip
        data = read_upload(sample, "sample")
        audio, out_sr = service.infer_chunk(data, sid, tran, daw_sr, speaker_field="sSpeakId")
        return _audio_response(audio, out_sr, "wav", "temp.wav", subtype="PCM_16")

    # -- 4.1 flask_api_full_song.py ------------------------------------------------------------
    @app.post("/wav2wav", summary="Convert a whole uploaded song (silence slicing at -40 dB)")
    def wav2wav(
        audio: Annotated[
            UploadFile | None, File(description="the song (wav, flac, ogg, mp3)")
        ] = None,
        tran: Annotated[str | None, Form()] = None,
        spk: Annotated[str, Form()] = "0",
        wav_format: Annotated[str, Form()] = "wav",
        audio_path: Annotated[str | None, Form(include_in_schema=False)] = None,
    ) -> Response:
        if audio_path is not None:
            raise ServiceError(
                "audio_path is not accepted: upload the audio as the multipart file field 'audio'"
            )
        if wav_format not in MEDIA_TYPES:
            raise ServiceError(f"wav_format: {wav_format!r} is not one of {', '.join(MEDIA_TYPES)}")
        trans = _int_field(tran, "tran")
        if abs(trans) > MAX_SEMITONES:
            raise ServiceError(f"tran: {trans} is out of range (+-{MAX_SEMITONES:g} semitones)")
        data = read_upload(audio, "audio")
        opts = ConvertOptions(speaker=spk, trans=trans, wav_format=wav_format)
        res = service.convert(
            data, opts, audio.filename or "audio", save=False, speaker_field="spk"
        )
        return _audio_response(res.audio, res.sampling_rate, wav_format, f"temp.{wav_format}")

    # -- JSON API -------------------------------------------------------------------------------
    @app.get(
        "/api/v1/models",
        summary="Voices on disk (logs/44k, trained/, shipped: pretrain/<name>/), cluster files, the loaded voice",
    )
    def models() -> dict:
        listed = paths.discover_models(service.root)
        diff_models, diff_configs = paths.discover_diffusion(service.root)
        return {
            "models": [
                {
                    "name": e.name,
                    "config": e.config.relative_to(service.root).as_posix(),
                    "cluster_files": [p.relative_to(service.root).as_posix() for p in e.cluster],
                    "shipped": e.shipped,
                }
                for e in listed
            ],  # fmt: skip
            "diffusion_models": diff_models,
            "diffusion_configs": diff_configs,
            "loaded": _loaded(),
        }

    def _loaded() -> dict | None:
        info = service.info
        if info is None:
            return None
        rel = lambda p: _rel(service, p)  # noqa: E731
        return {"model": rel(info.model), "config": rel(info.config), "cluster": rel(info.cluster),
                "device": info.device, "enhance": info.enhance, "feature_retrieval": info.feature_retrieval,
                "speakers": info.speakers, "sampling_rate": info.sampling_rate,
                "diffusion_model": rel(info.diffusion_model), "diffusion_config": rel(info.diffusion_config),
                "shallow_diffusion": info.shallow_diffusion, "only_diffusion": info.only_diffusion,
                "backend": info.backend}  # fmt: skip

    @app.get("/api/v1/speakers", summary="Speakers of the loaded voice: {name: id}")
    def speakers() -> dict:
        service.require()
        return {"speakers": dict(service.info.speakers)}

    @app.get(
        "/api/v1/options", summary="Conversion options with their defaults (inference_main.py's)"
    )
    def options() -> dict:
        return {
            "defaults": ConvertOptions().model_dump(),
            "schema": ConvertOptions.model_json_schema(),
        }

    @app.post("/api/v1/load", summary="Load a listed voice (replaces the loaded one)")
    def load(req: LoadRequest) -> dict:
        from webui.service import parse_device

        service.load_entry(req.model, req.cluster, parse_device(req.device), req.enhance, req.diffusion_model,
                           req.diffusion_config, shallow_diffusion=req.shallow_diffusion,
                           only_diffusion=req.only_diffusion, backend=req.backend)  # fmt: skip
        return {"loaded": _loaded()}

    @app.post(
        "/api/v1/convert",
        summary="Convert an uploaded file with any options; answers the audio file",
    )
    def convert(
        audio: Annotated[UploadFile, File(description="input audio (wav, flac, ogg, mp3)")],
        options: Annotated[
            str, Form(description="JSON object of ConvertOptions fields (see /api/v1/options)")
        ] = "{}",
        spk_mix: Annotated[
            str, Form(description="spkmix.py text or JSON {speaker: [[t0, t1, v0, v1], ...]}")
        ] = "",
    ) -> Response:
        data = read_upload(audio, "audio")
        try:
            opts = ConvertOptions.model_validate_json(options or "{}")
        except ValidationError as e:
            raise ServiceError(validation_message(e, "options: ", flags=False)) from None
        mix = parse_spk_mix(spk_mix) if spk_mix.strip() else None
        res = service.convert(data, opts, audio.filename or "audio", spk_mix_map=mix,
                              speaker_field="options.speaker")  # fmt: skip
        return _audio_response(res.audio, res.sampling_rate, opts.wav_format, res.name,
                               headers={"X-Output-Path": header_text(f"{paths.RESULTS_DIR}/{res.name}"),
                                        "X-Seconds": f"{res.seconds:.3f}"})  # fmt: skip

    return app


def parse_spk_mix(text: str) -> dict:
    """A dynamic mix timeline from spkmix.py text or JSON (keys: speaker names or ids)."""
    from inference.cli import check_spk_mix_text, check_spk_mix_value, parse_spk_mix_map

    text = text.strip()
    check_spk_mix_text(text, "spk_mix", MAX_SPK_MIX_CHARS)
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ServiceError(f"spk_mix: not valid JSON ({e.msg})") from None
        if not isinstance(value, dict):
            raise ServiceError("spk_mix: must be an object")
        value = {int(k) if str(k).isdigit() else k: v for k, v in value.items()}
        return check_spk_mix_value(value, "spk_mix")
    try:
        return parse_spk_mix_map(text, "spk_mix")
    except SyntaxError as e:
        raise ServiceError(f"spk_mix: not valid Python literal syntax ({e.msg})") from None


def _rel(service: VoiceService, p: str) -> str:
    from pathlib import Path

    if not p:
        return ""
    try:
        return Path(p).resolve().relative_to(service.root).as_posix()
    except ValueError:
        return Path(p).name


def serve(app: FastAPI, host: str, port: int) -> None:
    """Run the app with uvicorn (one worker: one model per process)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, workers=1, log_level="info")


def main(
    argv: list[str] | None = None, default_port: int = 6842, name: str = "flask_api.py"
) -> int:
    """``flask_api.py`` / ``flask_api_full_song.py``: load one voice, serve every endpoint."""
    import argparse
    import logging
    import sys

    from common.checkpoint import latest_checkpoint_path

    p = argparse.ArgumentParser(prog=name, description=__doc__.split("\n\n")[0])
    p.add_argument(
        "-m", "--model_path", default=None,
        help="G_*.pth (default: the newest in logs/44k; without one, the first shipped voice in pretrain/)",
    )  # fmt: skip
    p.add_argument("-c", "--config_path", default=None, help="default: logs/44k/config.json")
    p.add_argument(
        "-cm", "--cluster_model_path", default="", help="kmeans .pt or retrieval .npz (optional)"
    )
    p.add_argument("-d", "--device", default=None, help="cpu, cuda, cuda:0 ... (default: auto)")
    p.add_argument("-eh", "--enhance", action="store_true", help="NSF-HiFiGAN enhancer")
    p.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=default_port)
    p.add_argument("--max_upload_mb", type=float, default=50.0, help="upload size limit (MB)")
    p.add_argument("--max_seconds", type=float, default=600.0, help="longest input accepted (s)")
    args = p.parse_args(argv)
    check_server_flags(args.port, args.max_seconds, max_upload_mb=args.max_upload_mb)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model, config = args.model_path, args.config_path
    if model is None:
        model = latest_checkpoint_path("logs/44k")
        shipped = paths.discover_shipped(".")
        if model is None and config is None and shipped:  # nothing trained yet: the demo voice
            model, config = shipped[0].model, shipped[0].config
            print(f"{name}: no -m and no logs/44k/G_*.pth: serving the shipped voice {shipped[0].name}",
                  file=sys.stderr)  # fmt: skip
    model, config = model or "logs/44k/G_37600.pth", config or "logs/44k/config.json"
    service = VoiceService(".", max_seconds=args.max_seconds)
    try:
        service.load(model, config, args.cluster_model_path, args.device, args.enhance)
    except user_errors() as e:
        print(f"error: {message(e)}", file=sys.stderr)
        return 1
    print(f"{name}: {model} loaded; speakers {service.info.speakers}; http://{args.host}:{args.port}/docs",
          file=sys.stderr)  # fmt: skip
    serve(create_app(service, args.max_upload_mb), args.host, args.port)
    return 0
