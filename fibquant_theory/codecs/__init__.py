"""Codecs of whole vectors: the protocol and registry, FibQuant, TurboQuant (MSE and QJL), KIVI, bit packing."""
