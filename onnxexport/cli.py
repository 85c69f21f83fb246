"""``onnx_export.py`` command line (so-vits-svc 4.1 flags, plus ``--encoder`` and ``--cluster``)."""

from __future__ import annotations

import argparse
import logging
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Export checkpoints/NAME/{model.pth, config.json} to ONNX for MoeVoiceStudio "
        "and DragonianLib: checkpoints/NAME/NAME_SoVits.onnx, checkpoints/NAME.json and "
        "checkpoints/NAME/NAME.dragonian.json"
    )
    p.add_argument("-n", "--model_name", type=str, default="TransformerFlow",
                   help="model folder under checkpoints/ (default TransformerFlow, as 4.1)")  # fmt: skip
    p.add_argument("--encoder", action="store_true",
                   help="also export the config's speech encoder → checkpoints/hubert/<name>.onnx")  # fmt: skip
    p.add_argument("--encoder_path", type=str, default=None,
                   help="the speech encoder checkpoint (default: its file under pretrain/)")  # fmt: skip
    p.add_argument("--cluster", type=str, default=None,
                   help="also export a cluster model (kmeans_10000.pt → KMeans.npy) or feature "
                   "index (feature_and_index.npz → Index-<i>.index) into checkpoints/NAME/")  # fmt: skip
    p.add_argument("--root", type=str, default="checkpoints", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from onnxexport.export import export_model
    from onnxexport.loading import ExportError, load_config_checked

    try:
        result = export_model(args.model_name, args.root, cluster=args.cluster)
        spec = result.spec
        print(f"exported in {result.seconds:.1f} s: inputs {', '.join(spec.input_names)} → audio")
        for f in result.files:
            print(f"wrote {f}")
        if args.encoder:
            from onnxexport.encoder import export_encoder

            hps = load_config_checked(Path(args.root) / args.model_name / "config.json")
            name = hps.model.get("speech_encoder") or "vec768l12"
            path, seconds = export_encoder(name, Path(args.root) / "hubert", args.encoder_path)
            print(f"wrote {path} ({name}, {seconds:.1f} s)")
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
