"""Registry and runner of the symbolic / numerical / Monte Carlo proof checks (``fibquant verify``).

Each module of :mod:`fibquant_theory.proofs` exposes ``CHECKS``: zero-argument
callables returning a :class:`~fibquant_theory.proofs._common.Check` or a list of
them. :func:`verify` runs them all and returns the JSON records
``{"name", "passed", "value", "expected", "tolerance"}``; a check that raises is
reported as failed (value ``nan``) with the exception in its detail, so that one
broken check never hides the others.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm

from fibquant_theory._table import format_table

__all__ = ["PROOF_MODULES", "run_checks", "verify", "format_report", "all_passed"]

#: Short name -> module of :mod:`fibquant_theory.proofs`, in the order they run.
PROOF_MODULES: dict[str, str] = {
    "spherical_beta": "fibquant_theory.proofs.spherical_beta",
    "high_rate": "fibquant_theory.proofs.high_rate",
    "dominance": "fibquant_theory.proofs.dominance",
    "sub_one_bit": "fibquant_theory.proofs.sub_one_bit",
}

_COLUMNS = ("name", "passed", "value", "relation", "expected", "tolerance", "seconds")


def _modules(only: Sequence[str] | None) -> list[str]:
    names = list(PROOF_MODULES) if not only else list(only)
    unknown = [n for n in names if n not in PROOF_MODULES]
    if unknown:
        raise ValueError(f"unknown proof module(s) {unknown}; choose from {sorted(PROOF_MODULES)}")
    return names


def run_checks(only: Sequence[str] | None = None, *, progress: bool = False) -> list[Any]:
    """Run the checks of the proof modules ``only`` (default: all) and return the ``Check`` objects.

    Parameters
    ----------
    only : sequence of str, optional
        Keys of :data:`PROOF_MODULES`.
    progress : bool
        Show a tqdm bar over the check groups.

    Returns
    -------
    list of Check
        Each with an extra ``seconds`` entry (wall time of its group, shared by the group's checks).
    """
    from fibquant_theory.proofs._common import Check

    groups: list[tuple[str, Callable[[], Any]]] = []
    for name in _modules(only):
        mod = importlib.import_module(PROOF_MODULES[name])
        groups += [(name, fn) for fn in mod.CHECKS]
    out: list[Check] = []
    for name, fn in tqdm(groups, desc="fibquant verify", disable=not progress, unit="group"):
        t0 = time.perf_counter()
        try:
            res = fn()
        except Exception as exc:  # noqa: BLE001 - a crashing check is a failed check, reported with its error
            res = Check(
                f"{name}.{getattr(fn, '__name__', 'check')}", False, float("nan"), float("nan"), float("nan"), "==",
                f"raised {type(exc).__name__}: {exc}; " + traceback.format_exc(limit=2).replace("\n", " | "),
            )
        dt = time.perf_counter() - t0
        for chk in res if isinstance(res, list) else [res]:
            chk.extra.setdefault("seconds", dt)
            out.append(chk)
    return out


def verify(only: Sequence[str] | None = None, *, progress: bool = False) -> list[dict[str, Any]]:
    """Run all checks and return their JSON records ``{"name", "passed", "value", "expected", "tolerance"}``.

    Parameters
    ----------
    only : sequence of str, optional
        Keys of :data:`PROOF_MODULES` (default: all).
    progress : bool, default False
        Show a progress bar.

    Returns
    -------
    list of dict
        One JSON record per check.
    """
    return [c.as_record() for c in run_checks(only, progress=progress)]


def all_passed(records: Sequence[Any]) -> bool:
    """``True`` when every record (dict or Check) passed and there is at least one.

    Parameters
    ----------
    records : sequence of dict or Check
        Records of :func:`verify` or checks of :func:`run_checks`.

    Returns
    -------
    bool
        Whether there is at least one record and all passed.
    """
    return bool(records) and all((r["passed"] if isinstance(r, dict) else r.passed) for r in records)


def format_report(checks: Sequence[Any]) -> str:
    """Aligned table of ``Check`` objects (with relation and timing) plus a one-line summary.

    Parameters
    ----------
    checks : sequence of Check
        Checks of :func:`run_checks`.

    Returns
    -------
    str
        The table and the summary line.
    """
    rows = []
    for c in checks:
        rows.append({
            "name": c.name, "passed": "PASS" if c.passed else "FAIL", "value": c.value, "relation": c.relation,
            "expected": c.expected, "tolerance": c.tolerance, "seconds": c.extra.get("seconds"),
        })
    n_fail = sum(not c.passed for c in checks)
    summary = f"{len(checks) - n_fail}/{len(checks)} checks passed" + (f"; FAILED: {n_fail}" if n_fail else "")
    failed = [f"  {c.name}: {c.detail}" for c in checks if not c.passed]
    return "\n".join([format_table(rows, _COLUMNS), summary, *failed])
