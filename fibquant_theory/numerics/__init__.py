"""Machine-independent numerics: portable elementary and special functions, fixed-order row products.

Everything here gives the same bits on every x86-64 machine (no BLAS, no libm, no fastmath);
the rest of the package builds on it."""
