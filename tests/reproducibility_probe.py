"""Fingerprints of results that must have the same bits on every x86-64 machine.

``python -m tests.reproducibility_probe`` prints them as JSON (the cross-machine test
runs it in subprocesses that imitate other CPUs); the expected values are written
down literally in tests/test_reproducibility.py.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

#: Small designs whose full content hashes are pinned: ``(d, k, N)`` with the default design options.
GOLDEN_DESIGNS = ((16, 2, 16), (64, 4, 256), (64, 32, 128))

def digest(a: Any) -> str:
    """First 16 hex digits of the SHA-256 of an array's bytes (C order, native dtype)."""
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()[:16]


def fingerprint() -> dict[str, str]:
    """Hashes of designs, samples, rotations, codes, decodes and estimates (a few seconds)."""
    from fibquant_theory.codebooks.design import design_codebook
    from fibquant_theory.codebooks.directions import fibonacci_sphere, fibonacci_sunflower, roberts_kronecker_directions
    from fibquant_theory.codebooks.shells import beta_quantile_radii
    from fibquant_theory.codecs.fibquant import FibQuantCodec
    from fibquant_theory.codecs.kivi import KIVICodec
    from fibquant_theory.codecs.turboquant import TurboQuantMSE, TurboQuantProd
    from fibquant_theory.experiments.rd import rate_distortion
    from fibquant_theory.theory.rotation import haar_orthogonal, randomized_hadamard
    from fibquant_theory.theory.scalar import lloyd_max_scalar
    from fibquant_theory.theory.source import SphericalBeta, sample_unit_vectors, standard_normal

    out: dict[str, str] = {}
    books = {args: design_codebook(*args, cache=False) for args in GOLDEN_DESIGNS}
    for args, cb in books.items():
        out[f"codebook{args}"] = cb.content_hash
    out["standard_normal"] = digest(standard_normal(100_000, 1))
    out["sample_unit_vectors"] = digest(sample_unit_vectors(2_000, 128, 2))
    out["spherical_beta_radial"] = digest(SphericalBeta(64, 1).rvs(50_000, seed=3))
    out["beta_quantile_radii"] = digest(beta_quantile_radii(1024, 8, 64))
    out["directions"] = digest(
        np.concatenate([fibonacci_sphere(500, 3).ravel(), fibonacci_sunflower(500, 128).ravel(),
                        roberts_kronecker_directions(500, 8, 40).ravel()])
    )
    out["haar_orthogonal(128)"] = digest(haar_orthogonal(128, 3))
    out["lloyd_max_scalar"] = digest(np.concatenate([lloyd_max_scalar(d, b).levels for d in (16, 128, 1024) for b in (1, 3, 8)]))

    x = 3.0 * sample_unit_vectors(300, 64, 9)
    q = sample_unit_vectors(4, 64, 10)
    for rotation in ("haar", "hadamard"):
        codec = FibQuantCodec(books[(64, 4, 256)], 1, rotation=rotation)
        codes = codec.encode(x)
        out[f"fibquant_{rotation}_codes"] = digest(codes.payload)
        out[f"fibquant_{rotation}_decode"] = digest(codec.decode(codes))
        out[f"fibquant_{rotation}_inner"] = digest(
            np.concatenate([codec.inner_product(q[:, None, :], codes, method=m).ravel() for m in ("lut", "gather")])
        )
    out["randomized_hadamard"] = digest(randomized_hadamard(64, 5).matrix)
    for cls in (TurboQuantMSE, TurboQuantProd):
        tq = cls(64, 3, 2)
        codes = tq.encode(x)
        out[cls.__name__] = digest(np.concatenate([tq.decode(codes).ravel(), tq.inner_product(q[:, None, :], codes).ravel()]))
    kv = KIVICodec(64, 3, mode="per-channel", group_size=16)
    out["kivi"] = digest(kv.inner_product(q[0], kv.encode(x)))
    # the clustered search: k-means clusters, overlapping member lists and codes (an unrefined shell codebook)
    from fibquant_theory.codebooks.shells import shell_codebook
    from fibquant_theory.search.encoders import ClusteredSearch

    shells = shell_codebook(64, 8, 16, 64)[0]
    cs = ClusteredSearch(shells, n_clusters=32, top=3, spill=2)
    idx, d2 = cs.search(SphericalBeta(64, 8).rvs(6_000, seed=4))  # enough work for the parallel kernel
    out["clustered"] = digest(np.concatenate([cs.index.parents.ravel(), cs.index.order.astype(np.float64), idx.astype(np.float64), d2]))
    row = rate_distortion(FibQuantCodec(books[(16, 2, 16)], 0), n_samples=5_000, seed=1)
    out["rate_distortion"] = json.dumps([row["mse"], row["ip_mse"], row["ip_bias"]])
    return out


if __name__ == "__main__":
    print(json.dumps(fingerprint(), indent=1, sort_keys=True))
