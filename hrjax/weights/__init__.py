"""Checkpoint keys, the converted-weights store and the catalogue of official checkpoints."""
