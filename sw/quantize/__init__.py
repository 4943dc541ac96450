"""Post-training quantization: calibration of activation ranges and integer weights."""
