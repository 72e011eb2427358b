"""The source and its theory: the spherical-Beta block law, the shared random rotation, scalar Lloyd–Max on its marginal, high-rate formulas."""
