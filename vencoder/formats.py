"""Readers for the real checkpoint files: each gives a :class:`Wav2Vec2Config` and a state dict
with our parameter names (``../shared/reference/formats/ENCODERS.md`` has the formats).

| reader | file | config from |
|---|---|---|
| :func:`read_fairseq_hubert` | ``checkpoint_best_legacy_500.pt``, ``chinese-hubert-large-fairseq-ckpt.pt`` | ``ckpt["cfg"]["model"]`` (a plain dict) |
| :func:`read_wavlm` | ``WavLM-Base+.pt`` | ``ckpt["cfg"]`` |
| :func:`read_dphubert` | ``DPHuBERT-sp0.75.pth`` | ``ckpt["config"]`` |
| :func:`read_hubert_soft` | ``hubert-soft-0d54a1f4.pt`` | tensor shapes (nothing is stored; heads fixed at 12) |

Nothing in a config is ever evaluated: fairseq's ``conv_feature_layers`` string (a Python
expression such as ``"[(512,10,5)] + [(512,3,2)] * 4"``) is read by :func:`parse_conv_layers`,
which accepts only int tuples, lists, ``+`` and ``*``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Mapping

import torch

from common.checkpoint import strip_module_prefix
from vencoder.base import EncoderError, fold_weight_norm, rename_keys
from vencoder.wav2vec2 import LayerSpec, RelPosConfig, Wav2Vec2Config

DEFAULT_CONV_LAYERS = "[(512,10,5)] + [(512,3,2)] * 4 + [(512,2,2)] * 2"

# fairseq / WavLM names → ours. GroupNorm is module 2 of a conv block; LayerNorm is 2.1 (it sits
# in a Sequential(TransposeLast, Fp32LayerNorm, TransposeLast)).
FAIRSEQ_RULES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.1\.", r"feature_extractor.conv_layers.\1.norm."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2\.", r"feature_extractor.conv_layers.\1.norm."),
    (r"^encoder\.pos_conv\.0\.", "encoder.pos_conv."),
]
# Training-only tensors in the fairseq / WavLM files (mask embedding, label embeddings).
FAIRSEQ_UNUSED = {"mask_emb", "label_embs_concat"}

# DPHuBERT (torchaudio-style) names → ours. Specific rules first.
DPHUBERT_RULES = [
    (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.conv_layers.\1.norm."),
    (r"^encoder\.feature_projection\.layer_norm\.", "layer_norm."),
    (r"^encoder\.feature_projection\.projection\.", "post_extract_proj."),
    (r"^encoder\.transformer\.pos_conv_embed\.conv\.", "encoder.pos_conv."),
    (r"^encoder\.transformer\.layer_norm\.", "encoder.layer_norm."),
    (r"^encoder\.transformer\.layers\.(\d+)\.attention\.", r"encoder.layers.\1.self_attn."),
    (r"^encoder\.transformer\.layers\.(\d+)\.layer_norm\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.transformer\.layers\.(\d+)\.feed_forward\.intermediate_dense\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.transformer\.layers\.(\d+)\.feed_forward\.output_dense\.", r"encoder.layers.\1.fc2."),
    (r"^encoder\.transformer\.layers\.", "encoder.layers."),
]  # fmt: skip

# bshall hubert-soft names (after stripping "module.") → ours.
HUBERT_SOFT_RULES = [
    (r"^feature_extractor\.conv(\d+)\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.norm0\.", "feature_extractor.conv_layers.0.norm."),
    (r"^feature_projection\.norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^positional_embedding\.conv\.", "encoder.pos_conv."),
    (r"^norm\.", "encoder.layer_norm."),
    (r"^encoder\.layers\.(\d+)\.linear1\.", r"encoder.layers.\1.fc1."),
    (r"^encoder\.layers\.(\d+)\.linear2\.", r"encoder.layers.\1.fc2."),
    (r"^encoder\.layers\.(\d+)\.norm1\.", r"encoder.layers.\1.self_attn_layer_norm."),
    (r"^encoder\.layers\.(\d+)\.norm2\.", r"encoder.layers.\1.final_layer_norm."),
    (r"^proj\.", "final_proj."),
]
HUBERT_SOFT_UNUSED = {"masked_spec_embed", "label_embedding.weight"}
HUBERT_SOFT_HEADS = 12  # fixed in bshall's code; not stored in the file
HUBERT_SOFT_STRIDES = (5, 2, 2, 2, 2, 2, 2)


# ----------------------------------------------------------------------------------- helpers


def parse_conv_layers(text: str) -> list[tuple[int, int, int]]:
    """Read fairseq's ``conv_feature_layers`` expression without evaluating it.

    Only int literals, tuples, lists, ``a + b`` (list concatenation) and ``list * int`` are
    accepted; anything else raises ``ValueError``.
    """

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return node.value
        if isinstance(node, ast.Tuple):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            a, b = ev(node.left), ev(node.right)
            if isinstance(a, list) and isinstance(b, list):
                return a + b
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mult):
            a, b = ev(node.left), ev(node.right)
            if isinstance(a, list) and type(b) is int and 0 <= b <= 64:
                return a * b
        raise ValueError(f"unsupported element in conv_feature_layers: {ast.dump(node)[:80]}")

    try:
        value = ev(ast.parse(str(text), mode="eval"))
    except SyntaxError as e:
        raise ValueError(f"conv_feature_layers is not a list expression: {text!r}") from e
    layers = []
    for item in value if isinstance(value, list) else []:
        if not (isinstance(item, tuple) and len(item) == 3 and all(type(v) is int for v in item)):
            raise ValueError(f"conv_feature_layers entries must be (dim, kernel, stride): {text!r}")
        layers.append(item)
    if not layers:
        raise ValueError(f"conv_feature_layers is empty or not a list: {text!r}")
    return layers


def _need_dict(obj, what: str, source: str) -> Mapping:
    if not isinstance(obj, Mapping):
        raise EncoderError(f"{source}: expected {what} to be a dict, found {type(obj).__name__}")
    return obj


def _tensors(state, source: str) -> dict[str, torch.Tensor]:
    state = _need_dict(state, "the state dict", source)
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise EncoderError(f"{source}: state dict entries that are not tensors: {bad[:5]}")
    return dict(state)


def _get(cfg: Mapping, key: str, default, source: str):
    value = cfg.get(key, default)
    if value is None:
        raise EncoderError(f"{source}: config field {key!r} is missing")
    return value


# ----------------------------------------------------------------------------------- readers


def _fairseq_like_config(m: Mapping, source: str, final_proj_dim: int | None) -> Wav2Vec2Config:
    """The model fields shared by fairseq HuBERT/wav2vec2 and WavLM configs."""
    act = m.get("activation_fn", "gelu")
    if act != "gelu":
        raise EncoderError(f"{source}: activation_fn {act!r} is not supported (only gelu)")
    if int(m.get("pos_conv_depth", 1) or 1) != 1:
        raise EncoderError(f"{source}: pos_conv_depth > 1 is not supported")
    mode = m.get("extractor_mode", "default")
    if mode not in ("default", "layer_norm"):
        raise EncoderError(f"{source}: extractor_mode {mode!r} is not supported")
    try:
        conv_layers = parse_conv_layers(m.get("conv_feature_layers") or DEFAULT_CONV_LAYERS)
    except ValueError as e:
        raise EncoderError(f"{source}: {e}") from None
    embed = int(_get(m, "encoder_embed_dim", 768, source))
    heads = int(_get(m, "encoder_attention_heads", 12, source))
    if embed % heads:
        raise EncoderError(f"{source}: encoder_embed_dim {embed} not divisible by {heads} heads")
    spec = LayerSpec(heads, embed // heads, int(_get(m, "encoder_ffn_embed_dim", 3072, source)))
    return Wav2Vec2Config(
        conv_layers=conv_layers,
        embed_dim=embed,
        layers=[spec] * int(_get(m, "encoder_layers", 12, source)),
        extractor_mode="group_norm" if mode == "default" else "layer_norm",
        conv_bias=bool(m.get("conv_bias", False)),
        conv_pos=int(m.get("conv_pos", 128)),
        conv_pos_groups=int(m.get("conv_pos_groups", 16)),
        layer_norm_first=bool(m.get("layer_norm_first", False)),
        final_proj_dim=final_proj_dim,
    )


def _fairseq_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    state = rename_keys(state, FAIRSEQ_RULES)
    fold_weight_norm(state, "encoder.pos_conv")
    return state


def read_fairseq_hubert(ckpt, source: str) -> tuple[Wav2Vec2Config, dict, set[str]]:
    """fairseq trainer checkpoint (ContentVec legacy, HuBERT, Chinese HuBERT).

    Uses ``cfg["model"]`` and ``model`` only; ``args`` must be None (fairseq ≥ 2021 files), an
    argparse ``args`` could not have been read safely anyway. ContentVec's extra keys
    (``encoder_layers_1`` …) are ignored, as fairseq does. Returns (config, state, unused keys).
    """
    ckpt = _need_dict(ckpt, "the checkpoint", source)
    if "cfg" not in ckpt or "model" not in ckpt:
        raise EncoderError(
            f"{source}: not a fairseq checkpoint (top-level keys {list(ckpt)[:8]}; "
            "expected 'cfg' and 'model')"
        )
    cfg = _need_dict(ckpt["cfg"], "cfg", source)
    m = _need_dict(cfg.get("model"), "cfg['model']", source)
    state = _tensors(ckpt["model"], source)
    proj = state.get("final_proj.weight")
    config = _fairseq_like_config(m, source, None if proj is None else int(proj.shape[0]))
    # cfg["task"]["normalize"] is not used: so-vits-svc feeds the raw waveform to every
    # fairseq model (Chinese HuBERT says normalize=True, and is still fed raw audio).
    return config, _fairseq_state(state), FAIRSEQ_UNUSED


def read_wavlm(ckpt, source: str) -> tuple[Wav2Vec2Config, dict, set[str]]:
    """microsoft/unilm WavLM checkpoint ``{"cfg": dict, "model": state_dict}``."""
    ckpt = _need_dict(ckpt, "the checkpoint", source)
    if "cfg" not in ckpt or "model" not in ckpt:
        raise EncoderError(
            f"{source}: not a WavLM checkpoint (top-level keys {list(ckpt)[:8]}; "
            "expected 'cfg' and 'model')"
        )
    cfg = _need_dict(ckpt["cfg"], "cfg", source)
    if int(cfg.get("expand_attention_head_size", -1)) != -1:
        raise EncoderError(f"{source}: expand_attention_head_size is not supported")
    config = _fairseq_like_config(cfg, source, None)
    if cfg.get("relative_position_embedding", False):
        config.rel_pos = RelPosConfig(
            num_buckets=int(cfg.get("num_buckets", 320)),
            max_distance=int(cfg.get("max_distance", 1280)),
            gru_rel_pos=bool(cfg.get("gru_rel_pos", False)),
        )
    config.normalize_waveform = bool(cfg.get("normalize", False))
    state = _fairseq_state(_tensors(ckpt["model"], source))
    return config, state, {"mask_emb"}


def read_dphubert(ckpt, source: str) -> tuple[Wav2Vec2Config, dict, set[str]]:
    """pyf98/DPHuBERT final checkpoint ``{"state_dict", "config", "distill_linear_projs"}``."""
    ckpt = _need_dict(ckpt, "the checkpoint", source)
    if "config" not in ckpt or "state_dict" not in ckpt:
        raise EncoderError(
            f"{source}: not a DPHuBERT checkpoint (top-level keys {list(ckpt)[:8]}; "
            "expected 'config' and 'state_dict')"
        )
    c = _need_dict(ckpt["config"], "config", source)
    if "encoder_remaining_heads" in c:
        raise EncoderError(
            f"{source}: this is a DPWavLM file; the dphubert encoder reads DPHuBERT files only "
            "(so-vits-svc 4.1 cannot load DPWavLM either)"
        )
    try:
        conv_layers = [tuple(int(v) for v in layer) for layer in c["extractor_conv_layer_config"]]
        n = int(c["encoder_num_layers"])
        use_attn = list(c.get("encoder_use_attention") or [True] * n)
        use_ff = list(c.get("encoder_use_feed_forward") or [True] * n)
        heads = c["encoder_num_heads"]
        heads = list(heads) if isinstance(heads, list | tuple) else [int(heads)] * n
        ffn = c["encoder_ff_interm_features"]
        ffn = list(ffn) if isinstance(ffn, list | tuple) else [int(ffn)] * n
        head_dim = int(c.get("encoder_head_dim", 64))
        layers = [
            LayerSpec(
                int(heads[i]) if use_attn[i] else 0, head_dim, int(ffn[i]) if use_ff[i] else 0
            )
            for i in range(n)
        ]
        mode = c.get("extractor_mode", "group_norm")
        if mode not in ("group_norm", "layer_norm"):
            raise EncoderError(f"{source}: extractor_mode {mode!r} is not supported")
        config = Wav2Vec2Config(
            conv_layers=conv_layers,
            embed_dim=int(c["encoder_embed_dim"]),
            layers=layers,
            extractor_mode=mode,
            conv_bias=bool(c.get("extractor_conv_bias", False)),
            conv_pos=int(c.get("encoder_pos_conv_kernel", 128)),
            conv_pos_groups=int(c.get("encoder_pos_conv_groups", 16)),
            layer_norm_first=bool(c.get("encoder_layer_norm_first", False)),
            feature_mask=True,
        )
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise EncoderError(
            f"{source}: DPHuBERT config is incomplete or malformed ({e!r})"
        ) from None
    config.normalize_waveform = bool(c.get("normalize_waveform", False))
    state = _tensors(ckpt["state_dict"], source)
    if "feature_extractor.dummy_weight" not in state:
        config.feature_mask = False  # an unpruned export without the soft mask
    state = rename_keys(state, DPHUBERT_RULES)
    fold_weight_norm(state, "encoder.pos_conv")
    unused = {k for k in state if k.startswith("aux.")}  # CTC head when aux_num_out is set
    return config, state, unused


def read_hubert_soft(ckpt, source: str) -> tuple[Wav2Vec2Config, dict, set[str]]:
    """bshall hubert-soft v0.1: the file is the state dict (``module.`` prefix from DDP)."""
    if not isinstance(ckpt, Mapping) or not any(
        str(k).endswith("feature_extractor.conv0.weight") for k in ckpt
    ):
        raise EncoderError(
            f"{source}: not a hubert-soft v0.1 state dict (expected keys like "
            "'module.feature_extractor.conv0.weight'; the v0.2 'hubert-soft-35d9f29f.pt' "
            "format is not what so-vits-svc uses)"
        )
    state = strip_module_prefix(_tensors(ckpt, source))
    try:
        convs = []
        i = 0
        while f"feature_extractor.conv{i}.weight" in state:
            w = state[f"feature_extractor.conv{i}.weight"]
            stride = HUBERT_SOFT_STRIDES[i] if i < len(HUBERT_SOFT_STRIDES) else 2
            convs.append((int(w.shape[0]), int(w.shape[2]), stride))
            i += 1
        embed = int(state["norm.weight"].shape[0])
        v = state["positional_embedding.conv.weight_v"]
        n_layers = 1 + max(
            int(m.group(1))
            for k in state
            if (m := re.match(r"encoder\.layers\.(\d+)\.", k))
        )  # fmt: skip
        ffn = int(state["encoder.layers.0.linear1.weight"].shape[0])
        config = Wav2Vec2Config(
            conv_layers=convs,
            embed_dim=embed,
            layers=[LayerSpec(HUBERT_SOFT_HEADS, embed // HUBERT_SOFT_HEADS, ffn)] * n_layers,
            extractor_mode="group_norm",
            conv_pos=int(v.shape[2]),
            conv_pos_groups=embed // int(v.shape[1]),
            layer_norm_first=False,
            final_proj_dim=int(state["proj.weight"].shape[0]),
        )
    except (KeyError, ValueError, IndexError) as e:
        raise EncoderError(f"{source}: hubert-soft state dict is incomplete ({e!r})") from None
    # nn.MultiheadAttention packs q, k, v (in that order) into in_proj_*.
    for key in [k for k in state if k.endswith(".self_attn.in_proj_weight")]:
        prefix = key[: -len("in_proj_weight")]
        for suffix in ("weight", "bias"):
            packed = state.pop(f"{prefix}in_proj_{suffix}", None)
            if packed is None:
                continue
            q, k, v_ = packed.chunk(3, dim=0)
            state[f"{prefix}q_proj.{suffix}"] = q
            state[f"{prefix}k_proj.{suffix}"] = k
            state[f"{prefix}v_proj.{suffix}"] = v_
    state = rename_keys(state, HUBERT_SOFT_RULES)
    fold_weight_norm(state, "encoder.pos_conv")
    return config, state, HUBERT_SOFT_UNUSED
