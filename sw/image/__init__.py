"""The accelerator's weight image: format, layer program, writer, loader (docs/image-format.md)."""
