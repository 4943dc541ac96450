"""Software side: configuration, numerics, golden model, cycle model, packing (and, later, pruning and export)."""
