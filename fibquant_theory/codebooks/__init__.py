"""Codebooks of the unit ball: the :class:`Codebook` object and file format, the shells design
(Beta-quantile radii × quasi-uniform directions, refined by Lloyd–Max) and the structured families."""
