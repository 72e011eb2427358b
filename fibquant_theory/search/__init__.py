"""Nearest-codeword search: the one exhaustive kernel and the encoders (exhaustive, two-stage, clustered) built on it."""
