"""Conversion (so-vits-svc 4.1 ``inference/``): :class:`inference.infer_tool.Svc`, the silence
slicer, static model merging and the ``inference_main.py`` command line."""
