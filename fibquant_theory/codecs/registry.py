"""Codecs by name: one :class:`MethodSpec` per method, read by the library, the command line and the KV caches.

Options of every method (keyword arguments of :func:`make_codec`):

* ``"turboquant"``, ``"turboquant-prod"``: ``bits`` (required, an integer
  1..8), ``seed``, ``norm_dtype`` (the format the norms are stored and counted in);
* ``"fibquant"``: ``block`` (k, required), ``codewords`` (N) or ``bits`` (then
  ``N = 2**(bits*k)``; ``bits`` may be fractional when ``bits*k`` is an integer
  ``>= 1``, and when both are given they must agree), ``seed``, ``rotation``,
  ``norm_dtype``, ``encoder``, ``packing``, the encoder options ``probes``
  (``encoder="two-stage"`` only), ``n_clusters``, ``top`` and ``spill``
  (``encoder="clustered"`` only), and the design options ``n_train``,
  ``n_heldout``, ``cache`` and ``family`` (the codebook family: shells, the
  default, or a structured one, d4, e8 or hurwitz);
* ``"kivi"``: ``bits`` (required, an integer 1..8), ``seed`` (unused),
  ``mode``, ``group_size``, ``meta_dtype``;
* ``"fp8"``: no rate option (8 bits per coordinate, e4m3), ``seed`` (unused),
  ``scale_dtype`` (the format of the per-vector scale).

An unknown (e.g. misspelled) option raises :class:`TypeError` naming it and
listing the valid ones; a bad or inconsistent value raises :class:`ValueError`
naming the argument. No option is dropped, truncated or overridden silently.

Every codec has the protocol of :mod:`fibquant_theory.codecs.base`: ``d``,
``name``, ``rate_bits``, ``bits_per_vector``, ``compression_ratio``,
``encode``, ``decode``, ``decode_row``, ``inner_product``, ``take`` and
``codes_type`` (codes with ``nbytes``, ``to_bytes`` and ``from_bytes``).

Adding a codec
--------------
Write its module (the codec, its codes and a factory ``make_x(d, *, ...)``
whose options are keyword-only parameters) and add one :func:`register` line
below (and its bullet above: ``tests/codecs/test_registry.py`` checks that the
bullets list the factory's options). From the :class:`MethodSpec`,
:func:`make_codec`, ``fibquant rd --method``, the KV caches
(:meth:`fibquant_theory.kv.cache.CodecCache.from_method`), ``fibquant kv-eval``
/ ``kv-pareto`` / ``kv-generate --method`` and their option flags all know it.
``"fp"`` (:data:`FP_METHOD`) is a KV pseudo-method: no cache compression.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fibquant_theory.codecs.fibquant_factory import make_fibquant
from fibquant_theory.codecs.fp8 import make_fp8
from fibquant_theory.codecs.kivi import kivi_kv_roles, make_kivi
from fibquant_theory.codecs.turboquant import make_turboquant, make_turboquant_prod

__all__ = [
    "BITS",
    "BLOCK",
    "CODEWORDS",
    "FAMILY",
    "FP_METHOD",
    "KV_METHODS",
    "METHODS",
    "SPECS",
    "TRAIN",
    "Flag",
    "MethodSpec",
    "flag_help",
    "get_spec",
    "kv_methods",
    "make_codec",
    "parse_number",
    "register",
]

#: The KV pseudo-method "no cache compression" (the model's own fp cache).
FP_METHOD = "fp"


def parse_number(text: str) -> int | float:
    """A command-line number: an ``int`` when ``text`` is one (``"2"``), else a ``float`` (``"1.5"``).

    Parameters
    ----------
    text : str
        The argument.

    Returns
    -------
    int or float
        The number.

    Raises
    ------
    ValueError
        When ``text`` is not a number.
    """
    try:
        return int(text)
    except ValueError:
        return float(text)


parse_number.__name__ = "number"  # argparse names the type in its messages


@dataclasses.dataclass(frozen=True)
class Flag:
    """The command-line flag of one codec option (``fibquant rd`` and the ``kv-*`` commands).

    Attributes
    ----------
    option : str
        The factory option it sets (e.g. ``"n_train"``).
    flag : str
        The flag (e.g. ``"--train"``).
    type : callable
        Converts the argument (``int``, ``str``, :func:`parse_number`).
    metavar : str
        The argument's name in messages (e.g. ``"N"``).
    help : str
        What it sets; the command line appends the methods that take it.
    """

    option: str
    flag: str
    type: Callable[[str], Any]
    metavar: str
    help: str

    def for_values(self) -> Flag:
        """The flag of the same option for the values of a KV cache (``--value-bits`` sets ``value_bits``).

        Returns
        -------
        Flag
            A copy with the option, the command-line flag and the help text of the values.
        """
        return Flag(f"value_{self.option}", f"--value-{self.flag[2:]}", self.type, self.metavar,
                    f"{self.help}, for the values (default: {self.flag})")


#: Flags shared by several methods: one definition each.
BITS = Flag("bits", "--bits", parse_number, "B", "bits per coordinate")
BLOCK = Flag("block", "--block", int, "K", "block size k (divides d)")
CODEWORDS = Flag("codewords", "--codewords", int, "N", "codebook size N (rate log2(N)/k)")
TRAIN = Flag("n_train", "--train", int, "N", "codebook training samples (default 200000)")
FAMILY = Flag("family", "--family", str, "NAME", "codebook family: shells (default), or a structured one: d4, e8, hurwitz")


@dataclasses.dataclass(frozen=True)
class MethodSpec:
    """Everything the library, the command line and the KV caches know about one method.

    Attributes
    ----------
    name : str
        The method's name (``--method NAME``, ``make_codec(NAME, ...)``).
    factory : callable
        ``factory(d, **options)``: every option a keyword-only parameter.
    description : str
        One line.
    integer_rate : bool
        Whether ``bits`` must be an integer (scalar codecs) or may be fractional.
    rate_options : tuple of str
        Options that set the rate; a KV cache takes ``value_<name>`` for the values.
    required : tuple of tuple of str
        Groups of options; one option of every group must be given.
    flags : tuple of Flag
        Command-line flags of the options the commands expose.
    kv : bool
        Whether it is a KV-cache method.
    kv_exclude : mapping of str to str
        Options a KV cache does not take, and why (the error message says it).
    kv_roles : callable or None
        ``kv_roles(key_options, value_options) -> (key_options, value_options, chunk)``:
        how a KV cache sets up its key and value codecs (``None``: both as given, ``chunk = 1``).
    kv_sweep : tuple of mapping
        The settings of this method in the default ``kv-pareto`` sweep.
    example : mapping
        A typical setting of the rate options (``kv-generate``'s default, and the benchmarks of every method).
    """

    name: str
    factory: Callable[..., Any]
    description: str
    integer_rate: bool
    rate_options: tuple[str, ...]
    required: tuple[tuple[str, ...], ...]
    flags: tuple[Flag, ...] = ()
    kv: bool = True
    kv_exclude: Mapping[str, str] = dataclasses.field(default_factory=dict)
    kv_roles: Callable[[dict[str, Any], dict[str, Any]], tuple[dict[str, Any], dict[str, Any], int]] | None = None
    kv_sweep: tuple[Mapping[str, Any], ...] = ()
    example: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def options(self) -> tuple[str, ...]:
        """The factory's options (its keyword-only parameters), in signature order."""
        params = inspect.signature(self.factory).parameters.values()
        return tuple(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)

    @property
    def value_options(self) -> tuple[str, ...]:
        """``value_<name>`` for every rate option a KV cache takes: the values' own rate."""
        return tuple(f"value_{o}" for o in self.rate_options if o not in self.kv_exclude)

    @property
    def kv_options(self) -> tuple[str, ...]:
        """Options of a KV cache of this method: the factory's (less :attr:`kv_exclude`) and :attr:`value_options`."""
        return tuple(o for o in self.options if o not in self.kv_exclude) + self.value_options

    def missing(self, given: Sequence[str], kv: bool = False) -> list[tuple[str, ...]]:
        """The groups of :attr:`required` that ``given`` leaves unset (for a KV cache: without :attr:`kv_exclude`).

        Parameters
        ----------
        given : sequence of str
            Names of the options given.
        kv : bool
            Whether the options are those of a KV cache.

        Returns
        -------
        list of tuple of str
            Every group of which no option is given.
        """
        groups = [tuple(o for o in g if not (kv and o in self.kv_exclude)) for g in self.required]
        return [g for g in groups if g and not any(o in given for o in g)]

    def kv_codec_options(
        self, options: Mapping[str, Any], owner: str = "CodecCache"
    ) -> tuple[dict[str, Any], dict[str, Any], int]:
        """The key codec's and value codec's options, and the token chunk, of a KV cache of this method.

        Parameters
        ----------
        options : mapping
            Options among :attr:`kv_options`; ``value_<name>`` (when not
            ``None``) sets ``<name>`` for the values only.
        owner : str
            Who asks, for error messages.

        Returns
        -------
        key, value : dict
            :func:`make_codec` options of the two codecs.
        chunk : int
            Tokens are encoded in multiples of ``chunk``.

        Raises
        ------
        TypeError
            An option outside :attr:`kv_options` (the message names it, says
            why when it is in :attr:`kv_exclude`, and lists the known ones).
        """
        known = self.kv_options
        unknown = [name for name in options if name not in known]
        if unknown:
            why = "".join(f"; {name}: {self.kv_exclude[name]}" for name in unknown if name in self.kv_exclude)
            raise TypeError(
                f"{owner}: unknown option(s) {_hints(unknown, known)} for method {self.name!r}{why}; known: {sorted(known)}"
            )
        values = set(self.value_options)
        key = {k: v for k, v in options.items() if k not in values}
        value = {**key, **{k[len("value_"):]: v for k, v in options.items() if k in values and v is not None}}
        if self.kv_roles is None:
            return key, value, 1
        return self.kv_roles(key, value)


#: name -> spec, in registration order
SPECS: dict[str, MethodSpec] = {}
#: name -> factory(d, **options); every option is an explicit keyword-only parameter
METHODS: dict[str, Callable[..., Any]] = {}


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method to :data:`SPECS` and :data:`METHODS` (checking that its spec is consistent).

    Parameters
    ----------
    spec : MethodSpec
        The method.

    Returns
    -------
    MethodSpec
        ``spec``.

    Raises
    ------
    ValueError
        A name already taken (or ``"fp"``), a factory whose first parameter is
        not ``d`` or whose options are not keyword-only, or rate options,
        required options, flags, exclusions or settings that are not options
        of the factory.
    """
    if spec.name in SPECS or spec.name == FP_METHOD:
        raise ValueError(f"method {spec.name!r} is already registered")
    params = list(inspect.signature(spec.factory).parameters.values())
    if not params or params[0].name != "d" or any(p.kind is not p.KEYWORD_ONLY for p in params[1:]):
        raise ValueError(f"method {spec.name!r}: the factory must be factory(d, *, option=default, ...)")
    options = set(spec.options)
    named = {
        "rate_options": set(spec.rate_options),
        "required": {o for g in spec.required for o in g},
        "flags": {f.option for f in spec.flags},
        "kv_exclude": set(spec.kv_exclude),
        "example": set(spec.example),
        "kv_sweep": {o for s in spec.kv_sweep for o in s},
    }
    for what, names in named.items():
        extra = sorted(names - options - (set(spec.value_options) if what == "kv_sweep" else set()))
        if extra:
            raise ValueError(f"method {spec.name!r}: {what} names {extra}, which the factory does not take")
    SPECS[spec.name] = spec
    METHODS[spec.name] = spec.factory
    return spec


# ----------------------------------------------------------------------------- the methods (one line each)
register(MethodSpec(
    "fibquant", make_fibquant, "FibQuant: rotation + block-wise nearest codeword of a designed codebook + norm header",
    integer_rate=False, rate_options=("block", "codewords"), required=(("block",), ("codewords", "bits")),
    flags=(BITS, BLOCK, CODEWORDS, TRAIN, FAMILY),
    kv_exclude={"bits": "give codewords=N (N = 2**(bits*block)); the values take value_codewords"},
    kv_sweep=tuple({"block": k, "codewords": n} for k, n in ((2, 256), (2, 64), (4, 256), (8, 256), (16, 256), (32, 128))),
    example={"block": 4, "codewords": 256},
))
register(MethodSpec(
    "turboquant", make_turboquant, "TurboQuant-mse: Haar rotation + per-coordinate Lloyd-Max + norm header",
    integer_rate=True, rate_options=("bits",), required=(("bits",),), flags=(BITS,),
    kv_sweep=({"bits": 2}, {"bits": 3}, {"bits": 4}), example={"bits": 4},
))
register(MethodSpec(
    "turboquant-prod", make_turboquant_prod, "TurboQuant-prod: (bits-1)-bit TurboQuant-mse + 1-bit QJL sketch of the residual",
    integer_rate=True, rate_options=("bits",), required=(("bits",),), flags=(BITS,),
    kv_sweep=({"bits": 2}, {"bits": 3}, {"bits": 4}), example={"bits": 4},
))
register(MethodSpec(
    "kivi", make_kivi, "KIVI: asymmetric uniform integers, per-token or per-channel step and zero point",
    integer_rate=True, rate_options=("bits",), required=(("bits",),), flags=(BITS,),
    kv_exclude={"mode": "a KV cache has per-channel keys and per-token values, by design"}, kv_roles=kivi_kv_roles,
    kv_sweep=({"bits": 2}, {"bits": 4}), example={"bits": 4},
))
register(MethodSpec(
    "fp8", make_fp8, "FP8: e4m3 round trip of every coordinate, one fp16 scale (max |x_i| / 448) per vector",
    integer_rate=True, rate_options=(), required=(), flags=(), kv_sweep=({},), example={},
))


def kv_methods() -> tuple[str, ...]:
    """Methods of the KV caches and the ``kv-*`` commands: ``"fp"`` and every KV method, in registration order.

    Returns
    -------
    tuple of str
        The names (a method registered later is included).
    """
    return (FP_METHOD, *(name for name, spec in SPECS.items() if spec.kv))


#: :func:`kv_methods` of the methods registered here.
KV_METHODS: tuple[str, ...] = kv_methods()


def get_spec(method: str) -> MethodSpec:
    """The :class:`MethodSpec` of ``method``.

    Parameters
    ----------
    method : str
        A key of :data:`SPECS`.

    Returns
    -------
    MethodSpec
        Its spec.

    Raises
    ------
    ValueError
        For an unknown method (the message lists the known ones).
    """
    if not isinstance(method, str) or method not in SPECS:
        raise ValueError(f"unknown method {method!r}; choose from {sorted(METHODS)}")
    return SPECS[method]


def flag_help(flag: Flag, methods: Sequence[str]) -> str:
    """The help text of ``flag`` on a command where ``methods`` take it.

    Parameters
    ----------
    flag : Flag
        The flag.
    methods : sequence of str
        Registered methods that take it.

    Returns
    -------
    str
        ``flag.help`` and the methods (for ``bits``: which need an integer, see
        :attr:`MethodSpec.integer_rate`).
    """
    if flag.option.removeprefix("value_") == "bits":
        integer = [m for m in methods if SPECS[m].integer_rate]
        other = [m for m in methods if not SPECS[m].integer_rate]
        parts = ([f"an integer 1..8 for {', '.join(integer)}"] if integer else []) + (
            [f"fractional allowed for {', '.join(other)}"] if other else []
        )
        return f"{flag.help} ({'; '.join(parts)})"
    return f"{flag.help} ({', '.join(methods)})"


def _hints(names: Sequence[str], valid: Sequence[str]) -> str:
    """``'x' (did you mean 'y'?), 'z'``: the names, each with the closest valid one when there is one."""
    return ", ".join(
        f"{name!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, valid, n=1)) else repr(name)
        for name in names
    )


def make_codec(method: str, d: int, **options: Any) -> Any:
    """Build the codec called ``method`` for dimension ``d``.

    Parameters
    ----------
    method : str
        A key of :data:`METHODS`.
    d : int
        Vector dimension.
    **options
        Factory options (see the module docstring), e.g. ``bits=2, seed=0`` or
        ``block=8, codewords=256, seed=0``.

    Returns
    -------
    Codec
        The codec (see :class:`fibquant_theory.codecs.base.Codec`).

    Raises
    ------
    TypeError
        For an option that ``method`` does not have (the message lists those it has).
    ValueError
        For an unknown method, a missing required option, or a bad or
        inconsistent value (the message names the argument).
    """
    spec = get_spec(method)
    valid = spec.options
    unknown = [name for name in options if name not in valid]
    if unknown:
        raise TypeError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {_hints(unknown, valid)} for method {method!r}; "
            f"valid options: {', '.join(valid)}"
        )
    return spec.factory(d, **options)
