"""``onnx_export.py`` command line (so-vits-svc 4.1 flags, plus ``--encoder``, ``--cluster`` and
``--diffusion``).

One export per model folder at a time (a second one stops with one line); each run first removes
the temporaries (``.<file>.<random>.tmp``) a killed export left in ``checkpoints/NAME/``, beside
``checkpoints/NAME.json`` and, with ``--encoder``, in ``checkpoints/hubert/``. Exit codes as
:mod:`common.cli`.
"""

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
    p.add_argument("--diffusion", action="store_true",
                   help="also export the shallow-diffusion model checkpoints/NAME/diffusion.pt + "
                   "diffusion.yaml → checkpoints/NAME/NAME_{encoder,denoise,pred,after}.onnx "
                   "(alone when checkpoints/NAME/model.pth is absent)")  # fmt: skip
    p.add_argument("--diffusion_model", type=str, default=None,
                   help="the diffusion checkpoint (default checkpoints/NAME/diffusion.pt)")  # fmt: skip
    p.add_argument("--diffusion_config", type=str, default=None,
                   help="the diffusion config (default checkpoints/NAME/diffusion.yaml)")  # fmt: skip
    p.add_argument("--root", type=str, default="checkpoints", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    args = build_parser().parse_args(argv)
    from pathlib import Path

    from common.atomic import remove_stale_temporaries
    from common.locking import folder_lock

    if (args.diffusion_model or args.diffusion_config) and not args.diffusion:
        args.diffusion = True
    folder = Path(args.root) / args.model_name
    if not folder.is_dir():  # the export says what to put where
        return _export(args, folder)
    with folder_lock(folder, "onnx_export", wait=False):
        remove_stale_temporaries(folder)  # left by a killed export
        remove_stale_temporaries(args.root, f".{args.model_name}.json.*.tmp")
        return _export(args, folder)


def _export(args, folder) -> int:
    from onnxexport.loading import ExportError

    synth = not args.diffusion or (folder / "model.pth").exists()
    if not synth and (args.encoder or args.cluster):
        raise ExportError(
            f"{folder / 'model.pth'}: not found; --encoder and --cluster need the so-vits-svc "
            "model (model.pth + config.json) beside the diffusion model"
        )
    if synth and args.encoder:  # before any export: the encoder's file (one line, the way round)
        _require_encoder(args, folder)
    if synth and args.diffusion:  # the two models must fit, checked before any export
        from onnxexport.export import check_diffusion_beside

        check_diffusion_beside(args.model_name, args.root, args.diffusion_model,
                               args.diffusion_config)  # fmt: skip
    if synth:
        _export_synthesizer(args)
    else:
        print(f"no {folder / 'model.pth'}: exporting the diffusion model only")
    if args.diffusion:
        from onnxexport.export import export_diffusion_model

        res = export_diffusion_model(
            args.model_name, args.root, args.diffusion_model, args.diffusion_config
        )
        print(f"diffusion exported in {res.seconds:.1f} s")
        for f in res.files.values():
            print(f"wrote {f}")
    return 0


def _require_encoder(args, folder) -> None:
    """--encoder: the config's speech encoder can be exported and its file is there, else one
    line naming the file, where it comes from and the flags that avoid it."""
    from onnxexport.encoder import EXPORTABLE
    from onnxexport.loading import ExportError, load_config_checked
    from vencoder import ENCODERS, MissingCheckpointError, encoder_path
    from vencoder.base import require_file

    if not (folder / "config.json").is_file():
        return  # the export says what to put where
    name = load_config_checked(folder / "config.json").model.get("speech_encoder") or "vec768l12"
    if name not in EXPORTABLE:
        raise ExportError(
            f"--encoder: speech encoder {name!r} of {folder / 'config.json'} cannot be exported to "
            f"ONNX here (exportable: {', '.join(EXPORTABLE)})", "leave --encoder out"
        )  # fmt: skip
    path = args.encoder_path or encoder_path(name)
    try:
        require_file(path, name, ENCODERS[name].source)
    except MissingCheckpointError as e:
        flag = (
            "check --encoder_path"
            if args.encoder_path
            else "give the file with --encoder_path PATH"
        )
        raise MissingCheckpointError(
            str(e), f"{flag}, or leave --encoder out: the synthesizer is exported without it"
        ) from None


def _export_synthesizer(args) -> None:
    from pathlib import Path

    from onnxexport.export import export_model
    from onnxexport.loading import load_config_checked

    result = export_model(args.model_name, args.root, cluster=args.cluster)
    spec = result.spec
    # the written file's inputs (4.1's, for MoeVoiceStudio): the traced graph's sine_phase /
    # sine_noise inputs are folded away unless the graph is exported with fed=True
    print(f"exported in {result.seconds:.1f} s: inputs {', '.join(spec.moevs_input_names)} → audio")
    for f in result.files:
        print(f"wrote {f}")
    if args.encoder:
        from common.atomic import remove_stale_temporaries
        from common.locking import folder_lock
        from onnxexport.encoder import export_encoder

        hps = load_config_checked(Path(args.root) / args.model_name / "config.json")
        name = hps.model.get("speech_encoder") or "vec768l12"
        hubert = Path(args.root) / "hubert"
        with folder_lock(hubert, "onnx_export"):  # shared by every model: wait for another export
            remove_stale_temporaries(hubert, f".{name}.onnx.*.tmp")
            path, seconds = export_encoder(name, hubert, args.encoder_path)
        print(f"wrote {path} ({name}, {seconds:.1f} s)")


if __name__ == "__main__":
    from common.cli import run_main

    sys.exit(run_main(main))
