"""The encoder-layer engine: one generated top that runs a whole (pruned) layer program."""
