"""The source and its theory: the spherical-Beta block law, scalar Lloyd–Max on its marginal, high-rate formulas."""
