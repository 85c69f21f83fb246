"""One validation step for ``config.json`` and ``diffusion.yaml``, run by every script at start-up.

:func:`validate_config` and :func:`validate_diffusion_config` check required keys, types, ranges
and consistency (``n_speakers ≥ 1`` and every ``spk`` id below it, hop length = product of the
upsample rates, one kernel size per upsample rate, a known speech encoder, the diffusion
encoder's width equal to the model's ``ssl_dim``...). The first problem raises
:class:`~common.errors.ConfigError` as one line naming the file and the key::

    configs/config.json: model.n_speakers is 0; must be an integer >= 1 (fix the value ...)

``purpose`` selects what a script needs: ``"train"`` (everything), ``"infer"`` (the model and data
sections; keys that 4.1 added are optional so 4.0 configs keep working) or ``"features"``.
Whether ``ssl_dim`` equals the encoder's real output width is checked where the encoder runs
(a custom or tiny encoder file may differ from the reference width).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from common.errors import ConfigError

TRAIN, INFER, FEATURES = "train", "infer", "features"
ALL = (TRAIN, INFER, FEATURES)
HINT = "fix the value, or make the config again with preprocess_flist_config.py"
INTERPOLATE_MODES = ("left", "nearest", "linear")
VOCODERS = ("nsf-hifigan", "nsf-snake-hifigan")
AMP_DTYPES = ("fp32", "fp16", "bf16")
DIFFUSION_VOCODERS = ("nsf-hifigan", "nsf-hifigan-log10")  # vdecoder.pretrained.VOCODER_TYPES
DIFFUSION_METHODS = ("ddim", "pndm", "dpm-solver", "dpm-solver++", "unipc")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


def _int_list(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(_is_int(x) and x > 0 for x in v)


# (key, needed by, description, test)
Rule = tuple[str, tuple[str, ...], str, Callable[[Any], bool]]


def _pos_int(key: str, need=ALL) -> Rule:
    return key, need, "an integer >= 1", lambda v: _is_int(v) and v >= 1


def _num(key: str, need, what: str, test: Callable[[float], bool]) -> Rule:
    return key, need, what, lambda v: _is_num(v) and test(v)


def _flag(key: str) -> Rule:
    return key, (), "true or false", lambda v: isinstance(v, bool)


CONFIG_RULES: list[Rule] = [
    # train
    _pos_int("train.log_interval", (TRAIN,)),
    _pos_int("train.eval_interval", (TRAIN,)),
    ("train.seed", (TRAIN,), "an integer", _is_int),
    _pos_int("train.epochs", (TRAIN,)),
    _num("train.learning_rate", (TRAIN,), "a number > 0", lambda v: v > 0),
    ("train.betas", (TRAIN,), "a list of two numbers in [0, 1)",
     lambda v: isinstance(v, list) and len(v) == 2 and all(_is_num(x) and 0 <= x < 1 for x in v)),
    _num("train.eps", (TRAIN,), "a number > 0", lambda v: v > 0),
    _pos_int("train.batch_size", (TRAIN,)),
    _flag("train.fp16_run"),
    ("train.half_type", (), "'fp16' or 'bf16'", lambda v: v in ("fp16", "bf16")),
    _num("train.lr_decay", (TRAIN,), "a number in (0, 1]", lambda v: 0 < v <= 1),
    _pos_int("train.segment_size", (TRAIN, INFER)),
    _num("train.c_mel", (TRAIN,), "a number >= 0", lambda v: v >= 0),
    _num("train.c_kl", (TRAIN,), "a number >= 0", lambda v: v >= 0),
    ("train.keep_ckpts", (), "an integer >= 0 (0 keeps all)", lambda v: _is_int(v) and v >= 0),
    _flag("train.all_in_mem"),
    _flag("train.vol_aug"),
    ("train.warmup_epochs", (), "an integer >= 0", lambda v: _is_int(v) and v >= 0),
    ("train.max_frames", (), "an integer >= 0 (0: the reference crop)",
     lambda v: _is_int(v) and v >= 0),
    # data
    ("data.training_files", (TRAIN,), "a file path", lambda v: isinstance(v, str) and v != ""),
    ("data.validation_files", (TRAIN,), "a file path", lambda v: isinstance(v, str) and v != ""),
    _num("data.max_wav_value", (TRAIN,), "a number > 0", lambda v: v > 0),
    _pos_int("data.sampling_rate"),
    _pos_int("data.filter_length"),
    _pos_int("data.hop_length"),
    _pos_int("data.win_length"),
    _pos_int("data.n_mel_channels", (TRAIN,)),
    _num("data.mel_fmin", (TRAIN,), "a number >= 0", lambda v: v >= 0),
    ("data.mel_fmax", (TRAIN,), "a number > 0 or null", lambda v: v is None or (_is_num(v) and v > 0)),
    ("data.unit_interpolate_mode", (), " or ".join(INTERPOLATE_MODES),
     lambda v: v in INTERPOLATE_MODES),
    # model
    _pos_int("model.inter_channels", (TRAIN, INFER)),
    _pos_int("model.hidden_channels", (TRAIN, INFER)),
    _pos_int("model.filter_channels", (TRAIN, INFER)),
    _pos_int("model.n_heads", (TRAIN, INFER)),
    _pos_int("model.n_layers", (TRAIN, INFER)),
    _pos_int("model.kernel_size", (TRAIN, INFER)),
    _num("model.p_dropout", (TRAIN, INFER), "a number in [0, 1)", lambda v: 0 <= v < 1),
    ("model.resblock", (TRAIN, INFER), "'1' or '2'", lambda v: str(v) in ("1", "2")),
    ("model.resblock_kernel_sizes", (TRAIN, INFER), "a list of integers >= 1", _int_list),
    ("model.resblock_dilation_sizes", (TRAIN, INFER), "a list of lists of integers >= 1",
     lambda v: isinstance(v, list) and len(v) > 0 and all(_int_list(x) for x in v)),
    ("model.upsample_rates", (TRAIN, INFER), "a list of integers >= 1", _int_list),
    _pos_int("model.upsample_initial_channel", (TRAIN, INFER)),
    ("model.upsample_kernel_sizes", (TRAIN, INFER), "a list of integers >= 1", _int_list),
    _pos_int("model.gin_channels", (TRAIN, INFER)),
    _pos_int("model.ssl_dim", (TRAIN, INFER)),
    _pos_int("model.n_speakers", (TRAIN, INFER)),
    ("model.speech_encoder", (), "a speech encoder name", lambda v: isinstance(v, str)),
    ("model.vocoder_name", (), " or ".join(VOCODERS), lambda v: v in VOCODERS),
    _pos_int("model.n_flow_layer", ()),
    _pos_int("model.n_layers_trans_flow", ()),
    _flag("model.vol_embedding"),
    _flag("model.use_depthwise_conv"),
    _flag("model.flow_share_parameter"),
    _flag("model.use_automatic_f0_prediction"),
    _flag("model.use_transformer_flow"),
    _flag("model.use_spectral_norm"),
]  # fmt: skip


def _get(cfg: dict, dotted: str) -> tuple[bool, Any]:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _fail(path: str | os.PathLike, key: str, problem: str, hint: str = HINT) -> None:
    raise ConfigError(f"{path}: {key} {problem}", hint)


def _check_rules(cfg: dict, path, rules: list[Rule], purpose: str, hint: str = HINT) -> None:
    for key, need, what, test in rules:
        present, value = _get(cfg, key)
        if not present:
            if purpose in need:
                _fail(path, key, f"is missing; it must be {what}", hint)
            continue
        if value is None and purpose not in need and key != "data.mel_fmax":
            continue  # an explicit null for an optional key means "default"
        if not test(value):
            _fail(path, key, f"is {value!r}; it must be {what}", hint)


def validate_config(
    cfg: Any, path: str | os.PathLike = "config.json", purpose: str = TRAIN
) -> dict:
    """Check a so-vits-svc ``config.json`` (as a dict) for ``purpose``; returns it unchanged."""
    if purpose not in ALL:
        raise ValueError(f"purpose must be one of {ALL}, got {purpose!r}")
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a config must be a JSON object", HINT)
    sections = ("train", "data", "model") if purpose != FEATURES else ("data", "model")
    for section in sections:
        if not isinstance(cfg.get(section), dict):
            _fail(path, section, "section is missing (is this a so-vits-svc config.json?)")
    _check_rules(cfg, path, CONFIG_RULES, purpose)
    data, model = cfg["data"], cfg["model"]
    if purpose != FEATURES:
        if data["win_length"] > data["filter_length"]:
            _fail(path, "data.win_length", f"({data['win_length']}) is larger than "
                  f"data.filter_length ({data['filter_length']})")  # fmt: skip
        ups = model["upsample_rates"]
        if math.prod(ups) != data["hop_length"]:
            _fail(path, "model.upsample_rates", f"{ups} multiply to {math.prod(ups)}, but "
                  f"data.hop_length is {data['hop_length']}; they must be equal")  # fmt: skip
        if len(model["upsample_kernel_sizes"]) != len(ups):
            _fail(path, "model.upsample_kernel_sizes", f"has {len(model['upsample_kernel_sizes'])} "
                  f"entries but model.upsample_rates has {len(ups)}; give one per rate")  # fmt: skip
        if len(model["resblock_dilation_sizes"]) != len(model["resblock_kernel_sizes"]):
            _fail(path, "model.resblock_dilation_sizes", "must have one entry per "
                  "model.resblock_kernel_sizes entry")  # fmt: skip
        if model["hidden_channels"] % model["n_heads"]:
            _fail(path, "model.n_heads", f"({model['n_heads']}) must divide "
                  f"model.hidden_channels ({model['hidden_channels']})")  # fmt: skip
    if purpose == TRAIN and cfg["train"]["segment_size"] % data["hop_length"]:
        _fail(path, "train.segment_size", f"({cfg['train']['segment_size']}) must be a multiple "
              f"of data.hop_length ({data['hop_length']})")  # fmt: skip
    max_frames = cfg["train"].get("max_frames") if purpose == TRAIN else None
    if max_frames and max_frames * data["hop_length"] < cfg["train"]["segment_size"]:
        _fail(path, "train.max_frames", f"({max_frames}) is shorter than one training segment "
              f"(train.segment_size / data.hop_length = "
              f"{cfg['train']['segment_size'] // data['hop_length']} frames)",
              "raise it, or remove it for the reference crop")  # fmt: skip
    encoder = model.get("speech_encoder")
    if encoder is not None:
        _check_encoder(path, "model.speech_encoder", encoder)
    _check_spk(cfg, path, purpose)
    return cfg


def _check_encoder(path, key: str, name: str) -> None:
    from vencoder import ENCODER_NAMES

    if name not in ENCODER_NAMES:
        _fail(path, key, f"is {name!r}, not a known speech encoder",
              f"choose one of {', '.join(ENCODER_NAMES)}")  # fmt: skip


def validate_spk(cfg: dict, path: str | os.PathLike) -> dict:
    """Check only the ``spk`` map (what the index builder needs): non-empty, ids >= 0 (and below
    ``model.n_speakers`` when the config has it)."""
    _check_spk(cfg, path, TRAIN)
    return cfg["spk"]


def _check_spk(cfg: dict, path, purpose: str) -> None:
    spk = cfg.get("spk")
    if spk is None and purpose != TRAIN:
        return
    if not isinstance(spk, dict) or (purpose == TRAIN and not spk):
        _fail(path, "spk", 'must be a non-empty map of speaker name to id, e.g. {"alto": 0}')
    n = (cfg.get("model") or {}).get("n_speakers")
    for name, sid in spk.items():
        if not _is_int(sid) or sid < 0:
            _fail(path, f"spk.{name}", f"is {sid!r}; a speaker id must be an integer >= 0")
        if _is_int(n) and sid >= n:
            _fail(path, f"spk.{name}", f"is {sid}, but model.n_speakers is {n}; ids must be "
                  f"below it", "raise model.n_speakers or fix the id")  # fmt: skip


DIFFUSION_RULES: list[Rule] = [
    _pos_int("data.sampling_rate"),
    _pos_int("data.block_size"),
    _num("data.duration", ALL, "a number > 0", lambda v: v > 0),
    ("data.encoder", ALL, "a speech encoder name", lambda v: isinstance(v, str)),
    _pos_int("data.encoder_sample_rate"),
    _pos_int("data.encoder_hop_size"),
    _pos_int("data.encoder_out_channels"),
    ("data.unit_interpolate_mode", (), " or ".join(INTERPOLATE_MODES),
     lambda v: v in INTERPOLATE_MODES),
    _pos_int("model.n_layers", (TRAIN, INFER)),
    _pos_int("model.n_chans", (TRAIN, INFER)),
    _pos_int("model.n_hidden", (TRAIN, INFER)),
    _pos_int("model.timesteps", (TRAIN, INFER)),
    ("model.k_step_max", (TRAIN, INFER), "an integer >= 0", lambda v: _is_int(v) and v >= 0),
    _pos_int("model.n_spk"),
    ("vocoder.ckpt", ALL, "a path", lambda v: isinstance(v, str) and v != ""),
    _pos_int("train.batch_size", (TRAIN,)),
    _num("train.lr", (TRAIN,), "a number > 0", lambda v: v > 0),
    _pos_int("train.epochs", (TRAIN,)),
    ("data.training_files", (TRAIN,), "a file path", lambda v: isinstance(v, str) and v != ""),
    ("data.validation_files", (TRAIN,), "a file path", lambda v: isinstance(v, str) and v != ""),
    _flag("model.use_pitch_aug"),
    ("vocoder.type", (), " or ".join(DIFFUSION_VOCODERS), lambda v: v in DIFFUSION_VOCODERS),
    ("train.cache_device", (), "'cpu' or 'cuda'",
     lambda v: isinstance(v, str) and v.startswith(("cpu", "cuda"))),
    ("device", (), "'cpu' or 'cuda'", lambda v: isinstance(v, str) and v.startswith(("cpu", "cuda"))),
    ("env.expdir", (TRAIN,), "a folder path", lambda v: isinstance(v, str) and v.strip() != ""),
    _pos_int("infer.speedup", ()),
    ("infer.method", (), " or ".join(DIFFUSION_METHODS), lambda v: v in DIFFUSION_METHODS),
    _pos_int("train.interval_log", (TRAIN,)),
    _pos_int("train.interval_val", (TRAIN,)),
    _pos_int("train.interval_force_save", (TRAIN,)),
    _pos_int("train.decay_step", (TRAIN,)),
    _num("train.gamma", (TRAIN,), "a number in (0, 1]", lambda v: 0 < v <= 1),
    _num("train.weight_decay", (), "a number >= 0", lambda v: v >= 0),
    ("train.amp_dtype", (), " or ".join(AMP_DTYPES), lambda v: v in AMP_DTYPES),
    ("train.num_workers", (), "an integer >= 0", lambda v: _is_int(v) and v >= 0),
    ("train.seed", (), "an integer", _is_int),
    _flag("train.save_opt"),
    _flag("train.cache_all_data"),
    _flag("train.cache_fp16"),
]  # fmt: skip


def validate_diffusion_config(
    cfg: Any,
    path: str | os.PathLike = "diffusion.yaml",
    purpose: str = TRAIN,
    config: dict | None = None,
) -> dict:
    """Check a ``diffusion.yaml`` (as a dict); with the so-vits ``config``, check they agree."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a diffusion config must be a YAML mapping", HINT)
    for section in ("data", "model", "vocoder") + (("train",) if purpose == TRAIN else ()):
        if not isinstance(cfg.get(section), dict):
            _fail(path, section, "section is missing (is this a diffusion.yaml?)")
    _check_rules(cfg, path, DIFFUSION_RULES, purpose)
    data, model = cfg["data"], cfg["model"]
    _check_encoder(path, "data.encoder", data["encoder"])
    if purpose != FEATURES and model["k_step_max"] > model["timesteps"]:
        _fail(path, "model.k_step_max", f"({model['k_step_max']}) is larger than model.timesteps "
              f"({model['timesteps']})")  # fmt: skip
    if int(data["duration"] * data["sampling_rate"] / data["block_size"]) < 1:
        _fail(path, "data.duration", f"({data['duration']} s) is shorter than one frame "
              f"(data.block_size / data.sampling_rate = "
              f"{data['block_size'] / data['sampling_rate']:.4f} s)")  # fmt: skip
    if purpose == TRAIN:
        _check_diffusion_spk(cfg, path)
    if config is not None:
        sv_model, sv_data = config.get("model", {}), config.get("data", {})
        pairs = [("data.encoder", data["encoder"], "model.speech_encoder",
                  sv_model.get("speech_encoder") or "vec768l12"),
                 ("data.encoder_out_channels", data["encoder_out_channels"], "model.ssl_dim",
                  sv_model.get("ssl_dim")),
                 ("data.block_size", data["block_size"], "data.hop_length", sv_data.get("hop_length")),
                 ("data.sampling_rate", data["sampling_rate"], "data.sampling_rate",
                  sv_data.get("sampling_rate"))]  # fmt: skip
        for key, mine, other_key, other in pairs:
            if other is not None and mine != other:
                _fail(path, key, f"is {mine!r} but {other_key} in config.json is {other!r}; "
                      "they must agree")  # fmt: skip
    return cfg


def _check_diffusion_spk(cfg: dict, path) -> None:
    """With ``model.n_spk > 1`` every ``spk`` id must be an embedding row (an integer below it)."""
    n = cfg["model"].get("n_spk") or 1
    spk = cfg.get("spk")
    if n <= 1:
        return
    if not isinstance(spk, dict) or not spk:
        _fail(path, "spk", f"must be a non-empty map of speaker name to id when model.n_spk is {n}")
    for name, sid in spk.items():
        if not _is_int(sid) or not 0 <= sid < n:
            _fail(path, f"spk.{name}", f"is {sid!r}; a speaker id must be an integer in "
                  f"[0, model.n_spk = {n})", "raise model.n_spk or fix the id")  # fmt: skip


def load_diffusion_config(
    path: str | os.PathLike, purpose: str = TRAIN, config: dict | None = None
) -> dict:
    """Read and validate a ``diffusion.yaml`` (one-line :class:`ConfigError` on any problem)."""
    import yaml

    cfg = _read_config(path, yaml.safe_load, yaml.YAMLError, "diffusion", "YAML", HINT,
                       "run preprocess_flist_config.py, or give the path with --diff_config")  # fmt: skip
    return validate_diffusion_config(cfg, path, purpose, config)


def _read_config(path, load, parse_error, kind: str, fmt: str, hint: str, where: str):
    """``load(file)`` of ``path``; a missing file or a parse error is one :class:`ConfigError`."""
    try:
        with open(path, encoding="utf-8") as f:
            return load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {kind} config not found", where) from None
    except (parse_error, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not valid {fmt} ({str(e).splitlines()[0]})", hint) from None


VISEMES_RULES: list[Rule] = [
    ("data.training_files", (TRAIN,), "a file path", lambda v: isinstance(v, str) and v != ""),
    ("data.validation_files", (), "a file path", lambda v: isinstance(v, str)),
    _pos_int("model.hidden", ()),
    _pos_int("model.n_blocks", ()),
    ("model.kernel_size", (), "an odd integer >= 1", lambda v: _is_int(v) and v >= 1 and v % 2),
    _num("model.dropout", (), "a number in [0, 1)", lambda v: 0 <= v < 1),
    _num("train.learning_rate", (), "a number > 0", lambda v: v > 0),
    _pos_int("train.batch_size", ()),
    _pos_int("train.segment_frames", ()),
    _pos_int("train.max_steps", ()),
    _pos_int("train.log_interval", ()),
    _pos_int("train.eval_interval", ()),
    ("train.keep_ckpts", (), "an integer >= 0 (0 keeps all)", lambda v: _is_int(v) and v >= 0),
    _num("train.velocity_weight", (), "a number >= 0", lambda v: v >= 0),
    ("train.seed", (), "an integer", _is_int),
    _flag("train.rotations"),
    _flag("train.eye_look"),
]  # fmt: skip
VISEMES_HINT = "fix the value, or make the config again with motion/prepare_visemes.py"


def load_visemes_config(path: str | os.PathLike) -> dict:
    """Read and check ``configs/visemes.json`` (train_visemes.py): one-line :class:`ConfigError`."""
    import json

    cfg = _read_config(path, json.load, json.JSONDecodeError, "visemes", "JSON", VISEMES_HINT,
                       "run motion/prepare_visemes.py, or give the path with -c")  # fmt: skip
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: a visemes config must be a JSON object", VISEMES_HINT)
    for section in ("data", "model", "train"):
        if not isinstance(cfg.setdefault(section, {}), dict):
            _fail(path, section, "must be a JSON object", VISEMES_HINT)
    _check_rules(cfg, path, VISEMES_RULES, TRAIN, VISEMES_HINT)
    for section in ("model", "train"):  # an explicit null means the default
        cfg[section] = {k: v for k, v in cfg[section].items() if v is not None}
    return cfg
