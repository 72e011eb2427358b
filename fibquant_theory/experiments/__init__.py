"""Experiments built on the library: rate–distortion estimates, the demo, figures, tables and the verification report."""
