"""Writers of speech-encoder checkpoints in the exact on-disk formats of the real files
(tests/data/formats/*.json, copied from the shared reference folder), for tests: same top-level structure, same key names in the
same order, same config fields, same pickle globals; only the sizes are tiny.

Each ``*_layout(config)`` returns the ordered ``[(key, shape)]`` of the file's state dict as the
producing code lays it out. With the real config it reproduces the JSON listing exactly (tested in
test_vencoder_formats.py), so with a tiny config it gives a faithful tiny file.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import sys
import types
from collections import OrderedDict
from pathlib import Path

import torch

REFERENCE = Path(__file__).resolve().parent / "data" / "formats"


def reference_json(name: str) -> dict:
    """A reference layout from tests/data/formats (kept with the tests): a missing file fails the
    test instead of skipping it."""
    import pytest

    path = REFERENCE / name
    if not path.is_file():
        pytest.fail(f"{path} not found: copy it into tests/data/formats (tests/data/README.md)")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------ layouts


def _conv_layers_from_string(text: str):
    from vencoder.formats import parse_conv_layers

    return parse_conv_layers(text)


def fairseq_hubert_layout(model_cfg: dict, n_labels: int) -> list[tuple[str, list[int]]]:
    """fairseq ``HubertModel.state_dict()`` (ContentVec legacy / Chinese HuBERT large)."""
    e = model_cfg["encoder_embed_dim"]
    f = model_cfg["encoder_ffn_embed_dim"]
    final_dim = model_cfg["final_dim"]
    convs = _conv_layers_from_string(model_cfg["conv_feature_layers"])
    ln_mode = model_cfg["extractor_mode"] == "layer_norm"
    out = [("mask_emb", [e]), ("label_embs_concat", [n_labels, final_dim])]
    c_in = 1
    for i, (c, k, _) in enumerate(convs):
        out.append((f"feature_extractor.conv_layers.{i}.0.weight", [c, c_in, k]))
        if model_cfg["conv_bias"]:
            out.append((f"feature_extractor.conv_layers.{i}.0.bias", [c]))
        if ln_mode:
            out += [(f"feature_extractor.conv_layers.{i}.2.1.{p}", [c]) for p in ("weight", "bias")]
        elif i == 0:
            out += [(f"feature_extractor.conv_layers.{i}.2.{p}", [c]) for p in ("weight", "bias")]
        c_in = c
    out += _fairseq_encoder_front(e, c_in, model_cfg["conv_pos"], model_cfg["conv_pos_groups"])
    for i in range(model_cfg["encoder_layers"]):
        out += _fairseq_layer(f"encoder.layers.{i}.", e, f)
    out += [("encoder.layer_norm.weight", [e]), ("encoder.layer_norm.bias", [e])]
    out += [("layer_norm.weight", [c_in]), ("layer_norm.bias", [c_in])]
    out += [("final_proj.weight", [final_dim, e]), ("final_proj.bias", [final_dim])]
    return out


def _fairseq_encoder_front(e, c_last, k, groups):
    return [
        ("post_extract_proj.weight", [e, c_last]),
        ("post_extract_proj.bias", [e]),
        ("encoder.pos_conv.0.bias", [e]),
        ("encoder.pos_conv.0.weight_g", [1, 1, k]),
        ("encoder.pos_conv.0.weight_v", [e, e // groups, k]),
    ]


def _fairseq_layer(p, e, f, attn_extra=(), attn_tail=()):
    out = list(attn_extra)
    for name in ("k_proj", "v_proj", "q_proj", "out_proj"):
        out += [(f"{p}self_attn.{name}.weight", [e, e]), (f"{p}self_attn.{name}.bias", [e])]
    out += list(attn_tail)
    out += [(f"{p}self_attn_layer_norm.weight", [e]), (f"{p}self_attn_layer_norm.bias", [e])]
    out += [(f"{p}fc1.weight", [f, e]), (f"{p}fc1.bias", [f])]
    out += [(f"{p}fc2.weight", [e, f]), (f"{p}fc2.bias", [e])]
    out += [(f"{p}final_layer_norm.weight", [e]), (f"{p}final_layer_norm.bias", [e])]
    return out


def wavlm_layout(cfg: dict) -> list[tuple[str, list[int]]]:
    """unilm ``WavLM.state_dict()`` (relative position bias + gated relative position)."""
    e, f, h = cfg["encoder_embed_dim"], cfg["encoder_ffn_embed_dim"], cfg["encoder_attention_heads"]
    convs = _conv_layers_from_string(cfg["conv_feature_layers"])
    out = [("mask_emb", [e])]
    c_in = 1
    for i, (c, k, _) in enumerate(convs):
        out.append((f"feature_extractor.conv_layers.{i}.0.weight", [c, c_in, k]))
        if i == 0:
            out += [(f"feature_extractor.conv_layers.0.2.{p}", [c]) for p in ("weight", "bias")]
        c_in = c
    out += _fairseq_encoder_front(e, c_in, cfg["conv_pos"], cfg["conv_pos_groups"])
    for i in range(cfg["encoder_layers"]):
        p = f"encoder.layers.{i}."
        extra = [(f"{p}self_attn.grep_a", [1, h, 1, 1])]
        if i == 0:
            extra.append((f"{p}self_attn.relative_attention_bias.weight", [cfg["num_buckets"], h]))
        tail = [
            (f"{p}self_attn.grep_linear.weight", [8, e // h]),
            (f"{p}self_attn.grep_linear.bias", [8]),
        ]
        out += _fairseq_layer(p, e, f, extra, tail)
    out += [("encoder.layer_norm.weight", [e]), ("encoder.layer_norm.bias", [e])]
    out += [("layer_norm.weight", [c_in]), ("layer_norm.bias", [c_in])]
    return out


def dphubert_layout(c: dict) -> list[tuple[str, list[int]]]:
    """pyf98/DPHuBERT ``wav2vec2_model(**config).state_dict()`` after pruning."""
    convs = [tuple(x) for x in c["extractor_conv_layer_config"]]
    e = c["encoder_embed_dim"]
    out = [("feature_extractor.dummy_weight", [convs[-1][0]])]
    c_in = 1
    for i, (ch, k, _) in enumerate(convs):
        if c["extractor_mode"] == "layer_norm" or i == 0:
            out += [
                (f"feature_extractor.conv_layers.{i}.layer_norm.{p}", [ch])
                for p in ("weight", "bias")
            ]
        out.append((f"feature_extractor.conv_layers.{i}.conv.weight", [ch, c_in, k]))
        if c["extractor_conv_bias"]:
            out.append((f"feature_extractor.conv_layers.{i}.conv.bias", [ch]))
        c_in = ch
    k, g = c["encoder_pos_conv_kernel"], c["encoder_pos_conv_groups"]
    out += [
        ("encoder.feature_projection.layer_norm.weight", [c_in]),
        ("encoder.feature_projection.layer_norm.bias", [c_in]),
        ("encoder.feature_projection.projection.weight", [e, c_in]),
        ("encoder.feature_projection.projection.bias", [e]),
        ("encoder.transformer.pos_conv_embed.conv.bias", [e]),
        ("encoder.transformer.pos_conv_embed.conv.weight_g", [1, 1, k]),
        ("encoder.transformer.pos_conv_embed.conv.weight_v", [e, e // g, k]),
        ("encoder.transformer.layer_norm.weight", [e]),
        ("encoder.transformer.layer_norm.bias", [e]),
    ]
    for i in range(c["encoder_num_layers"]):
        p = f"encoder.transformer.layers.{i}."
        inner = c["encoder_num_heads"][i] * c["encoder_head_dim"]
        if c["encoder_use_attention"][i] and inner > 0:
            for name in ("k_proj", "v_proj", "q_proj"):
                out += [
                    (f"{p}attention.{name}.weight", [inner, e]),
                    (f"{p}attention.{name}.bias", [inner]),
                ]
            out += [
                (f"{p}attention.out_proj.weight", [e, inner]),
                (f"{p}attention.out_proj.bias", [e]),
            ]
        out += [(f"{p}layer_norm.weight", [e]), (f"{p}layer_norm.bias", [e])]
        f = c["encoder_ff_interm_features"][i]
        if c["encoder_use_feed_forward"][i] and f > 0:
            out += [
                (f"{p}feed_forward.intermediate_dense.weight", [f, e]),
                (f"{p}feed_forward.intermediate_dense.bias", [f]),
                (f"{p}feed_forward.output_dense.weight", [e, f]),
                (f"{p}feed_forward.output_dense.bias", [e]),
            ]
        out += [(f"{p}final_layer_norm.weight", [e]), (f"{p}final_layer_norm.bias", [e])]
    return out


def hubert_soft_layout(
    hidden=768, ffn=3072, layers=12, proj=256, conv=512, pos_kernel=128, pos_groups=16, labels=100
) -> list[tuple[str, list[int]]]:
    """bshall ``Hubert`` under DDP (every key starts with ``module.``)."""
    out = [("masked_spec_embed", [hidden]), ("feature_extractor.conv0.weight", [conv, 1, 10])]
    out += [("feature_extractor.norm0.weight", [conv]), ("feature_extractor.norm0.bias", [conv])]
    out += [(f"feature_extractor.conv{i}.weight", [conv, conv, 3]) for i in (1, 2, 3, 4)]
    out += [(f"feature_extractor.conv{i}.weight", [conv, conv, 2]) for i in (5, 6)]
    out += [
        ("feature_projection.norm.weight", [conv]),
        ("feature_projection.norm.bias", [conv]),
        ("feature_projection.projection.weight", [hidden, conv]),
        ("feature_projection.projection.bias", [hidden]),
        ("positional_embedding.conv.bias", [hidden]),
        ("positional_embedding.conv.weight_g", [1, 1, pos_kernel]),
        ("positional_embedding.conv.weight_v", [hidden, hidden // pos_groups, pos_kernel]),
        ("norm.weight", [hidden]),
        ("norm.bias", [hidden]),
    ]
    for i in range(layers):
        p = f"encoder.layers.{i}."
        out += [
            (f"{p}self_attn.in_proj_weight", [3 * hidden, hidden]),
            (f"{p}self_attn.in_proj_bias", [3 * hidden]),
            (f"{p}self_attn.out_proj.weight", [hidden, hidden]),
            (f"{p}self_attn.out_proj.bias", [hidden]),
            (f"{p}linear1.weight", [ffn, hidden]),
            (f"{p}linear1.bias", [ffn]),
            (f"{p}linear2.weight", [hidden, ffn]),
            (f"{p}linear2.bias", [hidden]),
            (f"{p}norm1.weight", [hidden]),
            (f"{p}norm1.bias", [hidden]),
            (f"{p}norm2.weight", [hidden]),
            (f"{p}norm2.bias", [hidden]),
        ]
    out += [("proj.weight", [proj, hidden]), ("proj.bias", [proj])]
    out += [("label_embedding.weight", [labels, proj])]
    return [(f"module.{k}", s) for k, s in out]


def whisper_layout(d: dict) -> list[tuple[str, list[int]]]:
    """openai-whisper ``Whisper(ModelDimensions).state_dict()`` (encoder then decoder)."""

    def block(p, c, cross):
        out = []
        for att in ("attn", "cross_attn") if cross else ("attn",):
            out += [(f"{p}{att}.query.weight", [c, c]), (f"{p}{att}.query.bias", [c])]
            out += [(f"{p}{att}.key.weight", [c, c])]
            out += [(f"{p}{att}.value.weight", [c, c]), (f"{p}{att}.value.bias", [c])]
            out += [(f"{p}{att}.out.weight", [c, c]), (f"{p}{att}.out.bias", [c])]
            out += [(f"{p}{att}_ln.weight", [c]), (f"{p}{att}_ln.bias", [c])]
        out += [(f"{p}mlp.0.weight", [4 * c, c]), (f"{p}mlp.0.bias", [4 * c])]
        out += [(f"{p}mlp.2.weight", [c, 4 * c]), (f"{p}mlp.2.bias", [c])]
        out += [(f"{p}mlp_ln.weight", [c]), (f"{p}mlp_ln.bias", [c])]
        return out

    c, t = d["n_audio_state"], d["n_text_state"]
    out = [
        ("encoder.positional_embedding", [d["n_audio_ctx"], c]),
        ("encoder.conv1.weight", [c, d["n_mels"], 3]),
        ("encoder.conv1.bias", [c]),
        ("encoder.conv2.weight", [c, c, 3]),
        ("encoder.conv2.bias", [c]),
    ]
    for i in range(d["n_audio_layer"]):
        out += block(f"encoder.blocks.{i}.", c, cross=False)
    out += [("encoder.ln_post.weight", [c]), ("encoder.ln_post.bias", [c])]
    out += [("decoder.positional_embedding", [d["n_text_ctx"], t])]
    out += [("decoder.token_embedding.weight", [d["n_vocab"], t])]
    for i in range(d["n_text_layer"]):
        out += block(f"decoder.blocks.{i}.", t, cross=True)
    out += [("decoder.ln.weight", [t]), ("decoder.ln.bias", [t])]
    return out


def json_layout(ref: dict) -> list[tuple[str, list[int]]]:
    return [(k, v["shape"]) for k, v in ref["state_dict"].items()]


# ------------------------------------------------------------------------------------ tensors


def random_state(layout, dtype=torch.float32, seed=0, device=None) -> OrderedDict:
    """Random tensors for a layout. Norm weights near 1 and weight-norm g near the norm of v keep
    activations in a sane range; ``device="meta"`` allocates nothing."""
    gen = torch.Generator().manual_seed(seed)
    out = OrderedDict()
    for key, shape in layout:
        if device == "meta":
            out[key] = torch.empty(shape, dtype=dtype, device="meta")
            continue
        x = torch.randn(shape, generator=gen) * 0.2
        if key.endswith(("norm.weight", "_ln.weight", "norm0.weight", ".2.weight", "2.1.weight",
                         "norm1.weight", "norm2.weight", "layer_norm.weight")):  # fmt: skip
            x = 1.0 + 0.1 * x
        elif key.endswith("weight_g") or key.endswith("dummy_weight") or key.endswith("grep_a"):
            x = 1.0 + 0.1 * x.abs()
        elif len(shape) >= 2 and shape[-1] > 1:
            fan_in = shape[1] * (shape[2] if len(shape) > 2 else 1)
            x = torch.randn(shape, generator=gen) / max(fan_in, 1) ** 0.5
        out[key] = x.to(dtype)
    return out


def with_metadata(state: OrderedDict) -> OrderedDict:
    """``module.state_dict()`` carries ``_metadata`` (pickled as BUILD state on the OrderedDict)."""
    meta = OrderedDict()
    meta[""] = {"version": 1}
    for key in state:
        parts = key.split(".")[:-1]
        for i in range(1, len(parts) + 1):
            meta.setdefault(".".join(parts[:i]), {"version": 1})
    state._metadata = meta
    return state


# ------------------------------------------------------------------------------------ writers


@contextlib.contextmanager
def fairseq_dictionary_class():
    """A class that pickles as the global ``fairseq.data.dictionary.Dictionary`` (writing only)."""
    added = []
    for name in ("fairseq", "fairseq.data", "fairseq.data.dictionary"):
        if name not in sys.modules:
            sys.modules[name] = types.ModuleType(name)
            added.append(name)
    module = sys.modules["fairseq.data.dictionary"]
    had = getattr(module, "Dictionary", None)
    cls = type("Dictionary", (), {"__module__": "fairseq.data.dictionary"})
    module.Dictionary = cls
    try:
        yield cls
    finally:
        if had is not None:
            module.Dictionary = had
        for name in reversed(added):
            del sys.modules[name]


def make_dictionary(cls, labels: list[str]):
    d = cls.__new__(cls)
    symbols = ["<s>", "<pad>", "</s>", "<unk>", *labels]
    d.__dict__.update(
        bos_word="<s>", unk_word="<unk>", pad_word="<pad>", eos_word="</s>",
        symbols=symbols, count=[1] * 4 + [1000 - i for i in range(len(labels))],
        indices={s: i for i, s in enumerate(symbols)},
        bos_index=0, pad_index=1, eos_index=2, unk_index=3, nspecial=4,
    )  # fmt: skip
    return d


def _fairseq_metrics():
    meters = [(i, f"meter_{i}", "fairseq.logging.meters.AverageMeter", {"val": 1.0, "sum": 1.0,
              "count": 1, "round": 3}) for i in range(19)]  # fmt: skip
    return OrderedDict(default=list(meters), train=list(meters), train_inner=list(meters))


def write_fairseq_hubert(path, ref: dict, model_overrides: dict, labels: list[str], seed=0,
                         optimizer_state: bool = True, state_overrides=None) -> dict:  # fmt: skip
    """Write a fairseq trainer checkpoint like ``ref`` (ContentVec / CN-HuBERT JSON) with tiny
    model dims. Returns the state dict written."""
    cfg = copy.deepcopy(ref["config"])
    cfg["model"].update(model_overrides)
    n_labels = 4 + len(labels)
    state = with_metadata(random_state(fairseq_hubert_layout(cfg["model"], n_labels), seed=seed))
    if state_overrides:
        state_overrides(state)
    n_params = sum(v.numel() for v in state.values())
    with fairseq_dictionary_class() as Dictionary:
        ckpt = {
            "args": None,
            "cfg": cfg,
            "model": state,
            "criterion": None,
            "optimizer_history": [{
                "criterion_name": "HubertCriterion",
                "optimizer_name": "FP16Optimizer",
                "lr_scheduler_state": {"best": 2.935},
                "num_updates": 100000,
            }],
            "task_state": {"dictionaries": [make_dictionary(Dictionary, labels)]},
            "extra_state": {
                "metrics": _fairseq_metrics(),
                "previous_training_time": 345600.0,
                "train_iterator": {"version": 2, "epoch": 38, "iterations_in_epoch": 1234,
                                   "shuffle": True},
                "val_loss": 2.935,
                "best": 2.935,
            },
        }  # fmt: skip
        if optimizer_state:
            ckpt["last_optimizer_state"] = {
                "state": {0: {"step": 100000, "exp_avg": torch.zeros(n_params + 7),
                              "exp_avg_sq": torch.zeros(n_params + 7)}},
                "param_groups": [{"lr": 0.0005, "betas": (0.9, 0.98), "eps": 1e-06,
                                  "weight_decay": 0.01, "amsgrad": False, "params": [0]}],
                "loss_scale": 16.0,
            }  # fmt: skip
        expected = [k for k in ref["top_level_keys_in_order"]
                    if optimizer_state or k != "last_optimizer_state"]  # fmt: skip
        assert list(ckpt) == expected, list(ckpt)
        with open(path, "wb") as f:  # fairseq saves through a file object (zip root "archive")
            torch.save(ckpt, f)
    return state


def write_wavlm(path, ref: dict, overrides: dict, seed=0) -> dict:
    cfg = copy.deepcopy(ref["config"])
    cfg.update(overrides)
    state = with_metadata(random_state(wavlm_layout(cfg), seed=seed))
    torch.save({"cfg": cfg, "model": state}, path)
    return state


def write_dphubert(path, ref: dict, overrides: dict, seed=0) -> dict:
    config = copy.deepcopy(ref["config"])
    config.update(overrides)
    config = {k: config[k] for k in ref["config_key_order"]}
    config["extractor_conv_layer_config"] = [
        tuple(x) for x in config["extractor_conv_layer_config"]
    ]
    state = dict(random_state(dphubert_layout(config), seed=seed))  # a plain dict, no _metadata
    e = config["encoder_embed_dim"]
    shared = torch.nn.Linear(e, e)
    projs = {"0.weight": torch.randn(e, e), "0.bias": torch.zeros(e)}
    for i in (1, 2, 3):  # layers 4/8/12 share one Linear, hence one storage
        projs[f"{i}.weight"] = shared.weight.data
        projs[f"{i}.bias"] = shared.bias.data
    torch.save({"state_dict": state, "config": config, "distill_linear_projs": projs}, path)
    return state


def write_hubert_soft(path, seed=0, **sizes) -> dict:
    state = with_metadata(random_state(hubert_soft_layout(**sizes), seed=seed))
    torch.save(state, path)
    return state


def write_whisper(path, ref: dict, dims: dict, seed=0) -> dict:
    d = dict(ref["config"])
    d.update(dims)
    state = with_metadata(random_state(whisper_layout(d), dtype=torch.float16, seed=seed))
    torch.save({"dims": d, "model_state_dict": state}, path)
    return state


class Evil:
    """Pickles as a call to ``os.system`` (what a malicious checkpoint does)."""

    def __init__(self, marker: os.PathLike):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def write_malicious(path, marker, nested: bool) -> None:
    payload = Evil(marker)
    obj = {"cfg": {"model": payload}, "model": OrderedDict(w=torch.zeros(2))} if nested else payload
    torch.save(obj, path)


# Tiny configs used by the tests (dims a real file would take from its config / shapes).
TINY_CONV = "[(16,10,5)] + [(16,3,2)] * 4 + [(16,2,2)] * 2"
TINY_CONTENTVEC = dict(
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=48,
    encoder_attention_heads=4,
    final_dim=8,
    conv_feature_layers=TINY_CONV,
    conv_pos=8,
    conv_pos_groups=4,
)
TINY_CNHUBERT = dict(
    encoder_layers=3,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=48,
    encoder_attention_heads=4,
    final_dim=12,
    conv_feature_layers=TINY_CONV,
    conv_pos=8,
    conv_pos_groups=4,
)
TINY_WAVLM = dict(
    encoder_layers=3,
    encoder_embed_dim=32,
    encoder_ffn_embed_dim=48,
    encoder_attention_heads=4,
    conv_feature_layers=TINY_CONV,
    conv_pos=8,
    conv_pos_groups=4,
    num_buckets=32,
    max_distance=64,
)
TINY_DPHUBERT = dict(
    extractor_conv_layer_config=[(8, 10, 5), (9, 3, 2), (10, 3, 2), (11, 3, 2), (12, 3, 2),
                                 (13, 2, 2), (14, 2, 2)],
    encoder_embed_dim=32, encoder_pos_conv_kernel=8, encoder_pos_conv_groups=4,
    encoder_num_layers=4, encoder_use_attention=[True, True, True, False],
    encoder_use_feed_forward=[True, False, True, True], encoder_num_heads=[3, 1, 2, 0],
    encoder_head_dim=8, encoder_ff_interm_features=[20, 0, 11, 6],
)  # fmt: skip
TINY_HUBERT_SOFT = dict(hidden=48, ffn=64, layers=2, proj=8, conv=16, pos_kernel=8, pos_groups=16)
TINY_WHISPER = dict(
    n_vocab=64,
    n_audio_state=32,
    n_audio_head=4,
    n_audio_layer=2,
    n_text_ctx=8,
    n_text_state=16,
    n_text_head=2,
    n_text_layer=1,
)
