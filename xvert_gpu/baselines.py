"""The Table I baselines (SPEC section 7): CLAHE and Farbman et al.'s multi-scale WLS enhancement.

Every baseline has the signature ``method(image, **params)`` and returns an image of the same
array kind, shape and dtype as its input:

- ``uint8`` in, ``uint8`` out (0-255);
- ``uint16`` (or any unsigned/signed integer) in, same dtype out, on ``[0, 2**bits - 1]``; ``bits``
  defaults to the dtype's full range, so pass ``bits=12`` for 12-bit data stored in uint16;
- float on [0, 1] in, ``float32`` on [0, 1] out.

NumPy arrays are the working kind; CPU/CUDA torch tensors and CuPy arrays are accepted and given
back as such (a host round trip: both baselines run on the CPU, except the WLS solves of
:func:`farbman`, which follow ``device``).

:data:`BASELINES` maps names to functions and :func:`get` looks one up.

Validation (``ValueError`` naming the problem): the image must be 2-D, non-empty, numeric (not
bool or complex), free of NaN/Inf; floats must lie on [0, 1]; integers must be non-negative and
below ``2**bits``. A constant image comes back constant and finite.

CLAHE
-----
scikit-image's ``exposure.equalize_adapthist`` at the image's true bit depth. It never sees an
8-bit copy: the integer data goes in as it is (scikit-image stretches the image's min..max onto
its 2**14 internal grey levels), and the histograms get one bin per grey level of the data,
``nbins = min(2**bits, 2**14)`` (256 for 8-bit, 4096 for 12-bit, 16384 for 16-bit data, which
scikit-image quantises to 14 bits internally). ``clip_limit`` is scikit-image's normalised limit
*at 256 bins* (its default 0.01): it is scaled by ``256 / nbins`` before the call, so the limit on
the slope of the local mapping (``256 * clip_limit`` times that of the identity) and hence the
strength of the equalisation are the same at every bit depth, as in Zuiderveld's original
formulation (and OpenCV's), where the clip limit is a multiple of the mean bin height. Without
that scaling, 4096 bins at ``clip_limit=0.01`` would let the mapping's slope reach ~41 and
amplify the noise of 12-bit data; ``scale_clip=False`` gives scikit-image's raw semantics.
scikit-image's bins are ``1 + 2**14 // nbins`` internal levels wide; ``nbins + 1`` is passed so
that a power of two gives exactly ``nbins`` bins. Its output is stretched to [0, 1] by its own
min and max and scaled to the output range.

Farbman
-------
Z. Farbman, R. Fattal, D. Lischinski, R. Szeliski, "Edge-preserving decompositions for
multi-scale tone and detail manipulation", ACM TOG 27(3), 2008 (SIGGRAPH), Section 4 (multi-scale
decomposition) and Section 5.1 (multi-scale detail enhancement), with the parameters of the
authors' public MATLAB demo (``multiscaleDetailManipulation.m`` and ``tonemapLAB.m`` in the code
released with the paper):

1. Lightness ``L`` on a 0-100 scale. The demo uses CIELAB ``L*`` of an sRGB image. Here the
   default ``domain="intensity"`` takes ``L = 100 x`` with ``x`` the image on [0, 1]: a
   radiograph's stored values are already a display-referred (log-exposure) encoding, not sRGB, so
   pushing them through the sRGB transfer curve and the CIE cube root would reshape the grey scale
   by an arbitrary curve before the boost. ``domain="lab"`` reproduces the demo exactly (grey sRGB
   to ``L*`` with scikit-image's ``rgb2lab`` and back with ``lab2rgb``).
2. Coarse levels ``u_i = WLS_{lambda_i}(L)``, each from the input (not from the previous level) with
   increasing lambda, ``lambdas = (0.125, 0.5)`` and ``alpha = 1.2`` (the demo's
   ``wlsFilter(L, 0.125, 1.2)`` and ``wlsFilter(L, 0.50, 1.2)``: a factor c = 4 between levels,
   Section 4), solved with :func:`xvert_gpu.wls.wls_smooth`. Its smoothness weights come from the
   log of the image, as the demo's default guide ``log(L + eps)``; the log is scale-free, so the
   weights of ``L / 100`` are the demo's (``eps = 1e-4`` as in the demo; the log offset ``delta``
   is the toolkit's 1e-4, SPEC section 2).
3. Detail layers ``d_1 = L - u_1`` (fine), ``d_2 = u_1 - u_2`` (medium), base ``b = u_k``.
4. Recombination (``tonemapLAB.m``): ``L' = B + sum_i 100 S(d_i / 100, a_i)`` with the base
   ``B = 100 S((e b - 56) / 100, a_0) + 56`` (56 the demo's mid-grey pivot, ``e`` the exposure)
   and the demo's sigmoid ``S(x, a) = (1/(1 + exp(-a x)) - 1/2) / (2 (1/(1 + exp(-a/2)) - 1/2))``,
   which maps 0.5 to itself and has slope ~ ``a / 4`` at 0 (``a = 1`` is nearly the identity;
   ``a = 0`` is the identity; ``a < 0`` scales linearly by ``1 + a``, as in the demo).
5. The demo's three settings (:data:`FARBMAN_PRESETS`), ``(a_fine, a_medium; a_base, exposure)``:
   fine ``(25, 1; 1, 1.0)``, medium ``(1, 40; 1, 1.0)``, coarse ``(4, 1; 15, 1.1)`` (gamma 1; the
   demo's saturation 1.1 is a colour setting with no meaning for grey images). The demo writes the
   three images separately; the paper's Fig. 1 (right) combines "a somewhat milder detail
   enhancement at all three scales", and the usual way to combine the demo's outputs (as the
   demo's users do) is their mean, which is the default ``preset="combined"``: effective gains of
   about 2.9x (fine), 4x (medium) and 1.9x (base contrast).
6. Back to [0, 1] by clipping (``L' / 100``, or ``lab2rgb`` for ``domain="lab"``), as the demo's
   ``imwrite`` does; each preset's image is clipped before the mean. Clipping, not a stretch,
   keeps the grey levels of the input where the boost leaves them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .arrays import _is_cupy, _is_torch

__all__ = ["clahe", "farbman", "BASELINES", "get", "Boost", "FARBMAN_PRESETS",
           "FARBMAN_LAMBDAS"]

#: scikit-image's internal grey levels in ``equalize_adapthist`` (2**14).
SKIMAGE_LEVELS = 2 ** 14
#: Histogram bins at which ``clip_limit`` has scikit-image's meaning.
REFERENCE_BINS = 256


# ----------------------------------------------------------------------------------------------
# Validation and the dtype round trip
# ----------------------------------------------------------------------------------------------

def _to_numpy(image: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """A NumPy view/copy of the image and the function that gives a result back in its kind."""
    if _is_torch(image):
        import torch
        device = image.device
        return image.detach().cpu().numpy(), lambda y: torch.from_numpy(y).to(device)
    if _is_cupy(image):
        import cupy
        return image.get(), cupy.asarray
    if isinstance(image, np.ndarray):
        return image, lambda y: y
    try:
        return np.asarray(image), lambda y: y
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"image cannot be read as an array: {exc}") from None


@dataclass(frozen=True)
class _Prepared:
    """A validated image: float64 on [0, 1] plus what is needed to give a result back."""

    unit: np.ndarray
    raw: np.ndarray
    dtype: np.dtype
    bits: int | None        # significant bits of integer data; None for float input
    data_bits: int          # bits that set CLAHE's histogram resolution
    back: Callable[[np.ndarray], Any]

    @property
    def max_value(self) -> float:
        return 1.0 if self.bits is None else float(2 ** self.bits - 1)

    def finish(self, y: np.ndarray) -> Any:
        """[0, 1] float result -> the input's dtype (rounded, at ``bits``) and array kind."""
        y = np.clip(np.nan_to_num(y, nan=0.0), 0.0, 1.0)
        if self.bits is None:
            out = y.astype(np.float32)
        else:
            out = np.rint(y * self.max_value).astype(self.dtype)
        return self.back(np.ascontiguousarray(out))


def _prepare(image: Any, bits: int | None = None) -> _Prepared:
    """Validate a 2-D image and scale it to float64 on [0, 1] (integers by ``2**bits - 1``)."""
    if image is None:
        raise ValueError("image is None; expected a 2-D array")
    a, back = _to_numpy(image)
    if a.ndim != 2:
        raise ValueError(f"image must be 2-D (rows, cols); got ndim={a.ndim}, shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"image is empty (shape {a.shape})")
    kind = a.dtype.kind
    if kind not in "uif":
        raise ValueError(f"image dtype {a.dtype} is not an integer or floating-point type")
    if kind in "ui":
        full = int(np.iinfo(a.dtype).max).bit_length()
        if bits is None:
            bits = full
        if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= full:
            raise ValueError(f"bits must be an integer from 1 to {full} for {a.dtype} data; "
                             f"got {bits!r}")
        bits = int(bits)
        lo, hi = int(a.min()), int(a.max())
        if lo < 0:
            raise ValueError(f"image has negative values (min {lo})")
        if hi > 2 ** bits - 1:
            raise ValueError(f"image has values up to {hi}, above the {bits}-bit maximum "
                             f"{2 ** bits - 1}; pass the right bits=")
        unit = a.astype(np.float64) / float(2 ** bits - 1)
        return _Prepared(unit, a, a.dtype, bits, bits, back)
    if bits is not None and (not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 16):
        raise ValueError(f"bits must be an integer from 1 to 16 for float data; got {bits!r}")
    unit = a.astype(np.float64)
    if not np.all(np.isfinite(unit)):
        raise ValueError("image contains NaN or Inf")
    lo, hi = float(unit.min()), float(unit.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"float image must be on [0, 1]; its range is [{lo:g}, {hi:g}] "
                         "(scale it, or pass the integer array)")
    # Float data carries no bit depth: 8 bits (scikit-image's 256 bins) unless told otherwise.
    return _Prepared(unit, a, a.dtype, None, 8 if bits is None else int(bits), back)


# ----------------------------------------------------------------------------------------------
# CLAHE
# ----------------------------------------------------------------------------------------------

def clahe(image: Any, *, clip_limit: float = 0.01,
          kernel_size: int | Sequence[int] | None = None, nbins: int | None = None,
          bits: int | None = None, scale_clip: bool = True) -> Any:
    """Contrast-limited adaptive histogram equalisation at the image's true bit depth.

    Parameters
    ----------
    image : 2-D array
        uint8, uint16 (``bits`` significant bits) or float on [0, 1]; NumPy, torch or CuPy.
    clip_limit : float
        scikit-image's normalised clip limit at 256 bins (default 0.01, its default); see
        ``scale_clip``. 0 means no limit (plain AHE).
    kernel_size : int or (int, int), optional
        Contextual region size; default scikit-image's 1/8 of each image side.
    nbins : int, optional
        Histogram bins; default one per grey level, ``min(2**bits, 2**14)`` (float input: 256,
        or ``2**bits`` when ``bits`` is given).
    bits : int, optional
        Significant bits of integer data (default the dtype's: 8 for uint8, 16 for uint16); the
        output is on ``[0, 2**bits - 1]``. For float input, the bit depth of the data it came
        from (sets the default ``nbins`` only).
    scale_clip : bool
        Scale ``clip_limit`` by ``256 / nbins`` so that it bounds the mapping's slope the same
        way at every bit depth (default); False passes it to scikit-image unchanged.

    Returns
    -------
    array
        Same kind, shape and dtype as ``image`` (float input gives float32), the equalised image
        stretched to the full output range.

    Raises
    ------
    ValueError
        On a non-2-D, empty, NaN/Inf or out-of-range image, or bad parameters.
    """
    from skimage import exposure

    p = _prepare(image, bits)
    if not (math.isfinite(clip_limit) and clip_limit >= 0):
        raise ValueError(f"clip_limit must be a finite number >= 0; got {clip_limit}")
    if nbins is None:
        nbins = min(2 ** p.data_bits, SKIMAGE_LEVELS)
    if int(nbins) != nbins or not 2 <= nbins <= SKIMAGE_LEVELS:
        raise ValueError(f"nbins must be an integer from 2 to {SKIMAGE_LEVELS}; got {nbins}")
    nbins = int(nbins)
    if float(p.unit.max()) == float(p.unit.min()):
        return p.finish(p.unit)  # a flat image has nothing to equalise (scikit-image gives NaN)
    limit = clip_limit * REFERENCE_BINS / nbins if scale_clip else clip_limit
    # Integers go in exactly, never via 8 bits (scikit-image stretches min..max onto its 2**14
    # levels itself); uint16 is exact for any data of <= 16 bits.
    if p.bits is None or p.bits > 16:
        data = p.unit
    elif p.raw.dtype == np.uint8:
        data = p.raw
    else:
        data = p.raw.astype(np.uint16)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = exposure.equalize_adapthist(data, kernel_size=kernel_size, clip_limit=limit,
                                          nbins=nbins + 1)
    return p.finish(out)


# ----------------------------------------------------------------------------------------------
# Farbman et al. 2008
# ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Boost:
    """One recombination setting of ``tonemapLAB.m``.

    Attributes
    ----------
    detail : tuple of float
        Sigmoid parameter per detail layer, fine to coarse (the demo's ``val0, val1``).
    base : float
        Sigmoid parameter of the base layer (``val2``).
    exposure : float
        Multiplier of the base before its sigmoid.
    gamma : float
        Gamma of the (0-1 normalised) base; 1 leaves it alone.
    """

    detail: tuple[float, ...]
    base: float = 1.0
    exposure: float = 1.0
    gamma: float = 1.0


#: The demo's ``wlsFilter`` lambdas (fine to coarse), alpha 1.2.
FARBMAN_LAMBDAS = (0.125, 0.5)
FARBMAN_ALPHA = 1.2
#: The three settings of the authors' demo (``multiscaleDetailManipulation.m``).
FARBMAN_PRESETS: Mapping[str, Boost] = {
    "fine": Boost(detail=(25.0, 1.0), base=1.0, exposure=1.0),
    "medium": Boost(detail=(1.0, 40.0), base=1.0, exposure=1.0),
    "coarse": Boost(detail=(4.0, 1.0), base=15.0, exposure=1.1),
}
#: The demo's mid-grey pivot of the base layer, on the 0-100 lightness scale.
PIVOT = 56.0


def _sigmoid(x: np.ndarray, a: float) -> np.ndarray:
    """``tonemapLAB.m``'s sigmoid: 0.5 maps to itself; a = 0 identity, a < 0 linear (1 + a)."""
    from scipy.special import expit

    if a == 0:
        return x
    if a < 0:
        return (1.0 + a) * x
    y05 = expit(0.5 * a) - 0.5
    return (expit(a * x) - 0.5) * (0.5 / y05)


def _recombine(light: np.ndarray, levels: list[np.ndarray], boost: Boost) -> np.ndarray:
    """Boosted lightness (0-100 scale) from the input lightness and its coarse levels."""
    if len(boost.detail) != len(levels):
        raise ValueError(f"boost has {len(boost.detail)} detail parameters for "
                         f"{len(levels)} levels")
    finer = [light] + levels[:-1]
    base_in = boost.exposure * levels[-1]
    if boost.base == 0:
        base = base_in
    else:
        base = 100.0 * _sigmoid((base_in - PIVOT) / 100.0, boost.base) + PIVOT
    if boost.gamma != 1.0:
        lo, hi = float(base.min()), float(base.max())
        if hi > lo:
            base = ((base - lo) / (hi - lo)) ** boost.gamma * hi
    out = base.copy()
    for a, f, c in zip(boost.detail, finer, levels):
        out += 100.0 * _sigmoid((f - c) / 100.0, a)
    return out


def _to_lightness(unit: np.ndarray, domain: str) -> np.ndarray:
    if domain == "intensity":
        return 100.0 * unit
    from skimage.color import rgb2lab
    return rgb2lab(np.repeat(unit[..., None], 3, axis=-1))[..., 0]


def _from_lightness(light: np.ndarray, domain: str) -> np.ndarray:
    if domain == "intensity":
        return np.clip(light / 100.0, 0.0, 1.0)
    from skimage.color import lab2rgb
    lab = np.zeros(light.shape + (3,))
    lab[..., 0] = np.clip(light, 0.0, 100.0)
    return np.clip(lab2rgb(lab)[..., 1], 0.0, 1.0)  # grey: the three channels are equal


def farbman(image: Any, *, preset: str | Boost | Sequence[Boost] = "combined",
            lambdas: Sequence[float] = FARBMAN_LAMBDAS, alpha: float = FARBMAN_ALPHA,
            domain: str = "intensity", bits: int | None = None, eps: float = 1e-4,
            delta: float = 1e-4, tol: float = 1e-5, device: str = "auto") -> Any:
    """Multi-scale WLS detail enhancement (Farbman, Fattal, Lischinski, Szeliski 2008).

    See the module docstring for the method and where each number comes from.

    Parameters
    ----------
    image : 2-D array
        uint8, uint16 (``bits`` significant bits) or float on [0, 1]; NumPy, torch or CuPy.
    preset : {"combined", "fine", "medium", "coarse"} or Boost or sequence of Boost
        The demo's settings (:data:`FARBMAN_PRESETS`); "combined" (default) is the mean of the
        three. A :class:`Boost` (one value per level in ``detail``) or several (their mean)
        give custom settings.
    lambdas : sequence of float
        WLS smoothness of the coarse levels, increasing (default the demo's (0.125, 0.5)).
    alpha : float
        WLS gradient exponent (default 1.2).
    domain : {"intensity", "lab"}
        Lightness ``100 x`` (default) or CIELAB ``L*`` of the grey image taken as sRGB (the demo).
    bits : int, optional
        Significant bits of integer data (default the dtype's full range).
    eps, delta, tol : float
        WLS weight regulariser, log offset and CG tolerance (:func:`xvert_gpu.wls.wls_smooth`).
    device : {"auto", "cpu", "cuda"}
        Where the WLS solves run.

    Returns
    -------
    array
        Same kind, shape and dtype as ``image`` (float input gives float32), clipped to the
        output range.

    Raises
    ------
    ValueError
        On a non-2-D, empty, NaN/Inf or out-of-range image, or bad parameters.
    """
    from .wls import wls_smooth

    p = _prepare(image, bits)
    lambdas = tuple(float(v) for v in lambdas)
    if not lambdas or any(not (math.isfinite(v) and v > 0) for v in lambdas):
        raise ValueError(f"lambdas must be positive and finite; got {lambdas}")
    if any(b <= a for a, b in zip(lambdas, lambdas[1:])):
        raise ValueError(f"lambdas must increase from fine to coarse; got {lambdas}")
    if domain not in ("intensity", "lab"):
        raise ValueError(f"domain must be 'intensity' or 'lab'; got {domain!r}")
    if isinstance(preset, str):
        if preset == "combined":
            boosts = list(FARBMAN_PRESETS.values())
        elif preset in FARBMAN_PRESETS:
            boosts = [FARBMAN_PRESETS[preset]]
        else:
            raise ValueError(f"unknown preset {preset!r}; choose from "
                             f"{['combined', *FARBMAN_PRESETS]}")
    elif isinstance(preset, Boost):
        boosts = [preset]
    else:
        boosts = list(preset)
        if not boosts or not all(isinstance(b, Boost) for b in boosts):
            raise ValueError("preset must be a name, a Boost or a non-empty sequence of Boost")

    light = _to_lightness(p.unit, domain)
    if float(light.max()) == float(light.min()):
        levels = [light.copy() for _ in lambdas]  # flat: every level is the image itself
    else:
        # WLS works on [0, 1]; it is linear in its input, so smoothing L/100 and scaling back is
        # smoothing L, with the same log-gradient weights.
        src = np.clip(light / 100.0, 0.0, 1.0).astype(np.float32)
        levels = [100.0 * np.asarray(wls_smooth(src, lam=lam, alpha=alpha, eps=eps,
                                                delta=delta, tol=tol, device=device),
                                     dtype=np.float64)
                  for lam in lambdas]
    outs = [_from_lightness(_recombine(light, levels, b), domain) for b in boosts]
    return p.finish(np.mean(outs, axis=0))


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

#: Baseline name -> function ``method(image, **params)``.
BASELINES: dict[str, Callable[..., Any]] = {"clahe": clahe, "farbman": farbman}


def get(name: str) -> Callable[..., Any]:
    """The baseline called ``name``.

    Raises
    ------
    ValueError
        If there is none, listing the known names.
    """
    try:
        return BASELINES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(sorted(BASELINES))}") \
            from None
