"""Golden model: the exact integer arithmetic the accelerator must reproduce, in numpy int64."""
