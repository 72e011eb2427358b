"""Grid sweeps on Dask: one point per task, every result cached on disk, so a sweep resumes where it stopped.

:func:`run_sweep` takes a list of points (JSON-serialisable dicts), a top-level function
``point -> dict`` and a cache folder. A point whose result file is in the folder is read
from it; the others are submitted to a :mod:`dask.distributed` client: by default a
``LocalCluster`` of worker *processes* with one thread each on this machine
(:func:`dask_client`), or the scheduler of a running cluster (``scheduler=ADDRESS``,
``--scheduler`` on the command line). Each result is written, atomically, as soon as it
arrives, with a progress bar over completions; the results come back in the order of
the points. ``workers=0`` runs the points one after the other in this process, without
Dask, through the same cache.

The key of a point (:func:`point_key`) is a SHA-256 of the point, the function's
qualified name, its version and the package's version, so changing any of them is a
new point. A cache file that cannot be read, or is not the record of its point, is
reported with a ``RuntimeWarning`` and the point is recomputed (the file overwritten). Each point's
computation must depend only on the point (its seeds are in it), never on the worker
or the order: the results are then the same, bit for bit, on one process, on a
``LocalCluster`` and on a cluster. A point that fails raises :class:`SweepError`
naming it (the results that arrived before it are kept in the cache).

:func:`map_completed` is the layer beneath: it runs a function over items on a client
(or in this process) and yields ``(index, result)`` as each completes; ``kv-pareto``
runs its points with it and keeps its own cache
(:func:`fibquant_theory.kv.pareto.kv_pareto`, ``runner=``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from fibquant_theory._validation import check_int

__all__ = ["DEFAULT_TIMEOUT", "SweepError", "available_memory", "dask_client", "default_workers", "function_name",
           "map_completed", "package_version", "point_key", "run_sweep"]

#: Seconds :func:`dask_client` waits for the scheduler at ``--scheduler ADDRESS`` to answer.
DEFAULT_TIMEOUT = 10.0
_NO_CONTEXT = object()


class SweepError(RuntimeError):
    """A point of a sweep failed; the message names the point, ``point`` is it, the cause is chained.

    Parameters
    ----------
    message : str
        What failed, naming the point.
    point : object
        The point (or item) whose computation failed.
    """

    def __init__(self, message: str, point: Any) -> None:
        super().__init__(message)
        self.point = point


def default_workers() -> int:
    """The default size of a ``LocalCluster``: the CPU cores this process may use.

    Returns
    -------
    int
        ``len(os.sched_getaffinity(0))`` where available, else ``os.cpu_count()`` (at least 1).
    """
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - platforms without sched_getaffinity


def available_memory() -> int | None:
    """The memory available to new processes on this machine, in bytes.

    Returns
    -------
    int or None
        ``psutil.virtual_memory().available`` (what can be used without swapping);
        ``None`` when ``psutil`` (a dependency of ``dask.distributed``) is not installed.
    """
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def function_name(func: Callable[..., Any]) -> str:
    """The qualified name ``module.function`` of a top-level function: part of every point's key.

    Parameters
    ----------
    func : callable
        A function defined at the top level of an importable module (workers import it by name).

    Returns
    -------
    str
        ``func.__module__ + "." + func.__qualname__``.

    Raises
    ------
    ValueError
        If ``func`` is not callable, or is a lambda, a nested function or has no module.
    """
    if not callable(func):
        raise ValueError(f"the point function must be callable, got {func!r}")
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    if not module or not qualname or "<" in qualname or "." in qualname:
        raise ValueError(f"the point function must be a top-level function of a module (it names the cache), got {func!r}")
    return f"{module}.{qualname}"


def _canonical(point: Any, what: str = "point", sort_keys: bool = True) -> str:
    """``point`` as compact JSON (keys sorted: the text of a key; unsorted: a stored result keeps its order)."""
    try:
        return json.dumps(point, sort_keys=sort_keys, allow_nan=True, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"a {what} must be JSON-serialisable: {exc}; got {point!r}") from None


def point_key(point: dict[str, Any], func: Callable[..., Any], version: int | str = 1) -> str:
    """The cache key of ``point`` under ``func``: a SHA-256 of the point, the function's name, ``version`` and the package's.

    The package's version (:func:`package_version`) is part of it, so a result
    computed by another release of the package is never reused.

    Parameters
    ----------
    point : dict
        A JSON-serialisable point (key order does not matter).
    func : callable
        The point function (:func:`function_name`).
    version : int or str
        Bumped when the function's results change, so that old results are not reused.

    Returns
    -------
    str
        24 hexadecimal digits.

    Raises
    ------
    ValueError
        If the point is not a JSON-serialisable dict or ``func`` is not a top-level function.
    """
    if not isinstance(point, dict):
        raise ValueError(f"a point must be a dict, got {type(point).__name__}: {point!r}")
    blob = _canonical(_identity(function_name(func), version, point))
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None,
                timeout: float = DEFAULT_TIMEOUT, compute_threads: int | None = None) -> Iterator[Any]:
    """A :class:`distributed.Client`: of a new ``LocalCluster``, or of the scheduler at ``scheduler``; closed on exit.

    The ``LocalCluster`` has ``workers`` worker processes with one thread each (one task
    at a time) and no dashboard; it is shut down when the block ends. The numerical
    libraries of each worker (torch, OpenMP, MKL, OpenBLAS) use ``compute_threads``
    threads: Dask's own default is 1, which is right when there is a worker per core;
    fewer workers than cores can each use ``cores // workers``.

    Parameters
    ----------
    workers : int, optional
        Worker processes of the ``LocalCluster`` (``>= 1``; default :func:`default_workers`).
        Not with ``scheduler`` (a cluster has its own workers).
    scheduler : str, optional
        Address of a running scheduler, e.g. ``tcp://10.0.0.5:8786``.
    timeout : float
        Seconds to wait for that scheduler to answer.
    compute_threads : int, optional
        Threads of the numerical libraries in each worker of the ``LocalCluster``
        (``>= 1``; sets ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
        ``OPENBLAS_NUM_THREADS`` in the workers before they start; default 1, Dask's).
        Not with ``scheduler`` (its workers were started with their own).

    Yields
    ------
    distributed.Client
        The client.

    Raises
    ------
    ValueError
        If ``workers`` or ``compute_threads`` is not an integer ``>= 1``, ``scheduler``
        is given with either, the address is malformed, ``timeout`` is not a positive
        number, or ``dask.distributed`` is not installed.
    OSError
        If no scheduler answers at ``scheduler`` within ``timeout`` seconds.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:  # the package itself does not need it (e.g. installed without dependencies)
        raise ValueError("running points on Dask needs dask.distributed (pip install 'dask[distributed]'); "
                         "--workers 0 runs them in this process") from None

    if scheduler is not None:
        if workers is not None:
            raise ValueError("give the number of workers or a scheduler address, not both (a cluster has its own workers)")
        if compute_threads is not None:
            raise ValueError("compute_threads sets up the workers of a LocalCluster; a scheduler's workers have their own")
        if not isinstance(scheduler, str) or not scheduler.strip():
            raise ValueError(f"the scheduler address must be a non-empty string like tcp://HOST:8786, got {scheduler!r}")
        if not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        try:
            client = Client(scheduler.strip(), timeout=f"{float(timeout)}s")
        except ValueError as exc:
            raise ValueError(f"bad scheduler address {scheduler!r}: {exc}") from None
        except OSError as exc:
            raise OSError(f"no Dask scheduler answered at {scheduler} within {timeout:g} s ({exc})") from None
        with client:
            yield client
        return
    n = default_workers() if workers is None else check_int(workers, "workers", minimum=1)
    env = None
    if compute_threads is not None:
        threads = str(check_int(compute_threads, "compute_threads", minimum=1))
        env = {name: threads for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR, env=env) as cluster, Client(cluster) as client:
        yield client


def _describe(item: Any) -> str:
    try:
        return _canonical(item)
    except ValueError:
        return repr(item)


class _Whole:
    """A context that Dask sends as one pickle.

    Dask serialises a ``torch.nn.Module`` (or a collection holding one) attribute by
    attribute, which loses the references its parts share: the copy of a ``transformers``
    model then keeps one config per layer, and switching the model's attention
    implementation no longer reaches its layers. Pickled whole, the copy is exact.
    """

    def __init__(self, value: Any) -> None:
        self.value = value


def _call_with_context(func: Callable[..., Any], context: _Whole, item: Any) -> Any:
    """``func(context.value, item)``: a task of :func:`map_completed` with a context."""
    return func(context.value, item)


def map_completed(client: Any, func: Callable[..., Any], items: Sequence[Any], context: Any = _NO_CONTEXT,
                  names: Sequence[str] | None = None) -> Iterator[tuple[int, Any]]:
    """Run ``func`` on every item, on ``client`` (or in this process), yielding ``(index, result)`` as each completes.

    With a ``context``, every call is ``func(context, item)`` and the context is sent
    to every worker once (``client.scatter(..., broadcast=True)``), pickled as one
    object, so that the references between its parts survive: a model, say.
    At the first failure the other tasks are cancelled and :class:`SweepError` is raised.

    Parameters
    ----------
    client : distributed.Client or None
        Where to run; ``None``: in this process, in order.
    func : callable
        A picklable function ``item -> result`` (``(context, item) -> result`` with a context).
    items : sequence
        The items.
    context : object, optional
        Passed to every call as the first argument.
    names : sequence of str, optional
        The items' names in an error message (default their JSON).

    Yields
    ------
    tuple of (int, object)
        The index of an item and its result, in order of completion.

    Raises
    ------
    SweepError
        If a call raises (or its worker dies): ``"point NAME failed: ..."``, the cause chained.
    """
    items = list(items)
    name_of = (lambda i: names[i]) if names is not None else (lambda i: _describe(items[i]))
    has_context = context is not _NO_CONTEXT
    if client is None:
        for i, item in enumerate(items):
            try:
                result = func(context, item) if has_context else func(item)
            except Exception as exc:
                raise SweepError(f"point {name_of(i)} failed: {type(exc).__name__}: {exc}", items[i]) from exc
            yield i, result
        return
    from distributed import as_completed

    if has_context:
        # a list of one: scattering a tuple itself would scatter each of its elements
        shared = client.scatter([_Whole(context)], broadcast=True, hash=False)[0]
        futures = [client.submit(_call_with_context, func, shared, item, pure=False) for item in items]
    else:
        futures = [client.submit(func, item, pure=False) for item in items]
    index = {f.key: i for i, f in enumerate(futures)}
    try:
        for future in as_completed(futures):
            i = index[future.key]
            if future.status == "cancelled":
                raise SweepError(f"point {name_of(i)} was cancelled (by the scheduler or another client)", items[i])
            if future.status != "finished":
                exc = future.exception()
                raise SweepError(f"point {name_of(i)} failed: {type(exc).__name__}: {exc}", items[i]) from exc
            yield i, future.result()
            future.release()
    finally:
        client.cancel([f for f in futures if not f.done()])


def _identity(function: str, version: int | str, point: dict[str, Any]) -> dict[str, Any]:
    """What names a result: the point function, its version, the package's version and the point."""
    return {"function": function, "version": version, "package": package_version(), "point": point}


def package_version() -> str:
    """The installed version of the ``fibquant`` distribution: part of every point's key.

    Returns
    -------
    str
        ``importlib.metadata.version("fibquant")``, or ``"unknown"`` when the package
        runs from a source tree that was never installed.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fibquant")
    except PackageNotFoundError:  # pragma: no cover - a source tree on sys.path, never installed
        return "unknown"


def _read(path: Path, function: str, version: int | str, point: dict[str, Any]) -> dict[str, Any] | None:
    """The cached result at ``path``; ``None`` when there is none, or (with a ``RuntimeWarning``) it is unusable.

    A file that is not JSON, is not a record of this point (function, versions, point)
    or holds no dict result is reported and then recomputed (and overwritten).
    """
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problem = f"cannot be read ({type(exc).__name__}: {exc})"
    else:
        expected = json.loads(_canonical(_identity(function, version, point)))
        if not isinstance(record, dict) or {k: record.get(k) for k in expected} != expected:
            problem = "is not a record of this point"
        elif not isinstance(record.get("result"), dict):
            problem = "holds no result"
        else:
            return record["result"]
    warnings.warn(f"sweep cache file {path} {problem}; the point is recomputed", RuntimeWarning, stacklevel=3)
    return None


def _write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file in the same folder, renamed)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def run_sweep(points: Sequence[dict[str, Any]], func: Callable[[dict[str, Any]], dict[str, Any]],
              cache_dir: str | os.PathLike[str], *, version: int | str = 1, workers: int | None = None,
              scheduler: str | None = None, client: Any = None, timeout: float = DEFAULT_TIMEOUT,
              progress: bool = True, desc: str = "sweep") -> list[dict[str, Any]]:
    """Compute ``func(point)`` for every point not yet in ``cache_dir``, on Dask; return all results in order.

    Each result is stored as ``<cache_dir>/<point_key>.json`` (with the point, the
    function's name and the version) the moment it arrives, so an interrupted sweep
    resumes with the missing points only. A cached result is returned as stored, a new
    one as it is stored (through JSON), so a resumed sweep returns exactly what an
    uninterrupted one does. Duplicate points are computed once. A result file that
    cannot be read or is not the record of its point is reported with a
    ``RuntimeWarning`` and recomputed.

    Parameters
    ----------
    points : sequence of dict
        The grid: JSON-serialisable dicts (at least one).
    func : callable
        A top-level function ``point -> dict`` whose result is JSON-serialisable and
        depends only on the point.
    cache_dir : str or os.PathLike
        The folder of the results (created).
    version : int or str
        Part of every key (:func:`point_key`).
    workers : int, optional
        Worker processes of a new ``LocalCluster`` (default :func:`default_workers`);
        ``0``: compute in this process, without Dask.
    scheduler : str, optional
        Address of a running Dask scheduler to use instead (not with ``workers``).
    client : distributed.Client, optional
        An existing client to use instead (not with ``workers`` or ``scheduler``).
    timeout : float
        Seconds to wait for ``scheduler`` to answer.
    progress : bool
        Show a progress bar over the points (the cached ones count as done).
    desc : str
        The progress bar's label.

    Returns
    -------
    list of dict
        The result of every point, in the order of ``points``.

    Raises
    ------
    ValueError
        If ``points`` is empty or holds a point that is not a JSON-serialisable dict, if
        ``func`` is not a top-level function, or on a bad ``workers`` / ``scheduler`` /
        ``client`` combination.
    OSError
        If the scheduler does not answer within ``timeout`` or the cache cannot be written.
    SweepError
        If a point fails, or returns something other than a JSON-serialisable dict.
    """
    points = list(points)
    if not points:
        raise ValueError("the sweep has no points (an empty grid)")
    name = function_name(func)
    keys = [point_key(p, func, version) for p in points]
    if client is not None and (workers is not None or scheduler is not None):
        raise ValueError("give a client, or workers / a scheduler address, not both")
    if workers is not None and scheduler is None:
        workers = check_int(workers, "workers", minimum=0)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for key, point in zip(keys, points):
        if key not in results and (found := _read(cache / f"{key}.json", name, version, point)) is not None:
            results[key] = found
    first = {key: i for i, key in reversed(list(enumerate(keys)))}  # duplicates: the first of each
    todo = sorted(i for key, i in first.items() if key not in results)
    unique = len(first)
    with tqdm(total=unique, initial=unique - len(todo), desc=desc, disable=not progress) as bar:
        if todo:
            with contextlib.ExitStack() as stack:
                if client is None and not (workers == 0 and scheduler is None):
                    client = stack.enter_context(dask_client(workers, scheduler, timeout))
                done = map_completed(client, func, [points[i] for i in todo])
                for j, result in done:
                    i = todo[j]
                    if not isinstance(result, dict):
                        raise SweepError(f"point {_describe(points[i])} returned {type(result).__name__}, not a dict",
                                         points[i])
                    record = {**_identity(name, version, points[i]), "result": result}
                    try:
                        text = _canonical(record, "result", sort_keys=False)
                    except ValueError as exc:
                        raise SweepError(f"point {_describe(points[i])}: {exc}", points[i]) from None
                    _write(cache / f"{keys[i]}.json", text)
                    results[keys[i]] = json.loads(text)["result"]
                    bar.update(1)
    return [results[key] for key in keys]
