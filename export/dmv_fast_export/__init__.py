"""Export BigGAN-deep to ONNX (needs the [export] extra: torch + pytorch-pretrained-biggan)."""
