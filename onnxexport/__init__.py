"""ONNX export for MoeVoiceStudio / DragonianLib and the ONNX Runtime conversion backend."""
