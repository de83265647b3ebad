"""The paper's four image-quality measures (SPEC section 7), with the authors' MATLAB semantics.

- :func:`entropy`: MATLAB ``entropy`` (8-bit conversion, 256-bin histogram, log2).
- :func:`tenengrad`: mean squared Sobel gradient magnitude on [0, 1], replicated borders.
- :func:`lpc_si`: Local Phase Coherence Sharpness Index (Hassen, Wang, Salama, IEEE TIP 2013),
  a line-by-line port of the authors' Version 1.0 MATLAB code.
- :func:`tmqi`: Tone Mapped image Quality Index (Yeganeh and Wang, IEEE TIP 2013), a port of the
  authors' Version 1.0 MATLAB code for a grey reference and a grey 8-bit test image.

Input conventions (SPEC section 7): ``uint8`` images are used as they are (0-255); floating-point
images are taken to be on [0, 1]; ``uint16`` images are taken to span the full 16-bit range
(0-65535, i.e. ``x / 257`` on the 0-255 scale, which is what MATLAB's ``im2uint8`` does before
rounding). The reference of :func:`tmqi` is the exception: it is used at its own bit depth and in
any numeric dtype, because TMQI rescales it by its own minimum and maximum.

Every function takes a 2-D NumPy array, or a 2-D CuPy array, in which case all the work (FFTs,
filters, reductions) runs on the GPU through CuPy and ``cupyx.scipy``. CuPy is never imported
unless a CuPy array is passed in. Results are Python floats.

MATLAB details that matter for reproducing the authors' numbers, and how they are kept here:

- MATLAB ``round`` rounds half away from zero (:func:`round_half_away`); ``np.round`` does not.
- ``std`` is the sample standard deviation (``ddof=1``).
- ``filter2(w, x, 'valid')`` is a correlation keeping only the positions where the window fits.
- ``imfilter(x, ones(2)/4, 'symmetric', 'same')`` puts the 2x2 kernel's origin at its (1, 1)
  element, so output ``(i, j)`` averages ``x(i:i+1, j:j+1)``, with the image mirrored past its
  last row and column.
- ``blkproc`` zero-pads the image to whole blocks and hands the padded blocks to the function.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from .arrays import _is_cupy, array_module, base_ndarray

__all__ = ["entropy", "tenengrad", "lpc_si", "tmqi", "round_half_away"]


# ----------------------------------------------------------------------------------------------
# Backend helpers
# ----------------------------------------------------------------------------------------------

def _fft(xp):
    """``scipy.fft`` for NumPy arrays, ``cupyx.scipy.fft`` for CuPy arrays."""
    if xp is np:
        import scipy.fft
        return scipy.fft
    import cupyx.scipy.fft
    return cupyx.scipy.fft


def _ndimage(xp):
    """``scipy.ndimage`` for NumPy arrays, ``cupyx.scipy.ndimage`` for CuPy arrays."""
    if xp is np:
        import scipy.ndimage
        return scipy.ndimage
    import cupyx.scipy.ndimage
    return cupyx.scipy.ndimage


def _ndtr(xp):
    """The standard normal CDF for the array module (``scipy.special.ndtr`` or CuPy's)."""
    if xp is np:
        from scipy.special import ndtr
        return ndtr
    from cupyx.scipy.special import ndtr
    return ndtr


def round_half_away(x: Any) -> Any:
    """MATLAB ``round``: to the nearest integer, halves away from zero.

    Parameters
    ----------
    x : array_like or float
        Values to round (NumPy or CuPy array, or a Python scalar).

    Returns
    -------
    Same kind as ``x``
        Rounded values, as floats. ``floor(|x| + 0.5)`` is not used because the addition can
        round up ``0.49999999999999994``; the fractional part is compared instead.
    """
    if isinstance(x, (int, float, np.integer, np.floating)):
        a = abs(float(x))
        r = math.floor(a)
        r += 1.0 if a - r >= 0.5 else 0.0
        return math.copysign(r, float(x)) if r != 0 else 0.0
    xp = array_module(x)
    a = xp.abs(x)
    r = xp.floor(a)
    r = r + (a - r >= 0.5)
    return xp.copysign(r, x)


# ----------------------------------------------------------------------------------------------
# Validation and scale conversion
# ----------------------------------------------------------------------------------------------

def _check(img: Any, name: str = "img") -> Any:
    """Validate a 2-D real image; return it as a NumPy or CuPy array (not yet converted)."""
    if img is None:
        raise ValueError(f"{name} is None; expected a 2-D image array")
    if not (isinstance(img, np.ndarray) or _is_cupy(img)):
        try:
            img = np.asarray(img)
        except Exception as exc:  # ragged lists, CUDA tensors and the like
            raise ValueError(f"{name} cannot be read as a NumPy or CuPy array: {exc}") from None
    if isinstance(img, np.ndarray):
        # np.matrix turns * into a matrix product; a masked array's pixels under the mask are
        # not data, yet every filter and reduction here would use them
        img = base_ndarray(img, name)
        if not img.dtype.isnative:  # '>u2' != np.uint16, yet it is uint16 data
            img = img.astype(img.dtype.newbyteorder("="))
    xp = array_module(img)
    if img.ndim != 2:
        raise ValueError(f"{name} must be a 2-D grey image (rows, cols); got {img.ndim}-D shape "
                         f"{tuple(img.shape)}")
    if img.size == 0:
        raise ValueError(f"{name} is empty (shape {tuple(img.shape)})")
    kind = img.dtype.kind
    if kind not in "uif":
        raise ValueError(f"{name} has dtype {img.dtype}; expected uint8, uint16 or floating point")
    if kind == "f" and not bool(xp.isfinite(img).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return img


def _check_test(img: Any, name: str = "img") -> Any:
    """:func:`_check`, and integer images must be uint8 or uint16 (the scales the SPEC defines)."""
    img = _check(img, name)
    if img.dtype.kind in "ui" and img.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{name} has dtype {img.dtype}; pass uint8 (0-255), uint16 (0-65535) or "
                         "a float image on [0, 1]")
    return img


def _to_255(img: Any) -> Any:
    """float64 on the 0-255 scale: uint8 as is, uint16 / 257, float * 255 (no clipping)."""
    xp = array_module(img)
    if img.dtype == np.uint8:
        return img.astype(xp.float64)
    if img.dtype == np.uint16:
        return img.astype(xp.float64) / 257.0
    return img.astype(xp.float64) * 255.0


def _to_unit(img: Any) -> Any:
    """float64 on [0, 1]: uint8 / 255, uint16 / 65535, float as is (no clipping)."""
    xp = array_module(img)
    if img.dtype == np.uint8:
        return img.astype(xp.float64) / 255.0
    if img.dtype == np.uint16:
        return img.astype(xp.float64) / 65535.0
    return img.astype(xp.float64)


def _to_uint8_matlab(img: Any) -> Any:
    """MATLAB ``im2uint8``: uint8 as is; uint16 ``round(x / 257)``; float ``round(255 clip(x))``."""
    xp = array_module(img)
    if img.dtype == np.uint8:
        return img
    if img.dtype == np.uint16:
        return round_half_away(img.astype(xp.float64) / 257.0).astype(xp.uint8)
    x = xp.clip(img.astype(xp.float64), 0.0, 1.0)
    return round_half_away(255.0 * x).astype(xp.uint8)


# ----------------------------------------------------------------------------------------------
# Entropy and Tenengrad
# ----------------------------------------------------------------------------------------------

def entropy(img: Any) -> float:
    """Shannon entropy of the 8-bit grey-level histogram (MATLAB ``entropy``).

    Parameters
    ----------
    img : (M, N) array
        uint8 (used as is), uint16 (converted as ``round(x / 257)``) or float on [0, 1]
        (converted as ``round(255 * clip(x, 0, 1))``), rounding halves away from zero.

    Returns
    -------
    float
        ``-sum(p * log2(p))`` over the non-empty bins of the 256-bin histogram, in bits.

    Raises
    ------
    ValueError
        If the image is not 2-D, is empty, contains NaN/Inf or has an unsupported dtype.
    """
    img = _check_test(img)
    xp = array_module(img)
    u8 = _to_uint8_matlab(img)
    counts = xp.bincount(u8.ravel(), minlength=256)
    p = counts[counts > 0].astype(xp.float64) / float(u8.size)
    return float(-xp.sum(p * xp.log2(p)))


_SOBEL = np.array([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]])


def tenengrad(img: Any) -> float:
    """Tenengrad contrast: ``mean(Gx^2 + Gy^2)`` of the Sobel gradients on [0, 1].

    Parameters
    ----------
    img : (M, N) array
        uint8 (divided by 255), uint16 (divided by 65535) or float on [0, 1] (used as is).

    Returns
    -------
    float
        Mean over all pixels of the squared gradient magnitude. The Sobel kernel
        ``[1 2 1; 0 0 0; -1 -2 -1]`` and its transpose are applied by true convolution with
        replicated borders (MATLAB ``imfilter(..., 'replicate', 'conv')``), so the output has the
        image's size and a constant image scores exactly 0.

    Raises
    ------
    ValueError
        If the image is not 2-D, is empty, contains NaN/Inf or has an unsupported dtype.
    """
    img = _check_test(img)
    xp = array_module(img)
    ndi = _ndimage(xp)
    x = _to_unit(img)
    # The Sobel kernel is [1 0 -1]' * [1 2 1]: applied as two 1-D convolutions (replicated
    # borders commute with the separation), differencing last so a flat image gives exactly 0.
    smooth = xp.asarray(_SOBEL[0])
    diff = xp.asarray(_SOBEL[:, 0].copy())
    gy = ndi.convolve1d(ndi.convolve1d(x, smooth, axis=1, mode="nearest"), diff, axis=0,
                        mode="nearest")
    gx = ndi.convolve1d(ndi.convolve1d(x, smooth, axis=0, mode="nearest"), diff, axis=1,
                        mode="nearest")
    return float(xp.mean(gx * gx + gy * gy))


# ----------------------------------------------------------------------------------------------
# LPC-SI
# ----------------------------------------------------------------------------------------------

def _freq_range(n: int, xp) -> Any:
    """Kovesi's normalised frequency axis: odd ``n`` over ``n - 1``, even ``n`` over ``n``."""
    k = xp.arange(n, dtype=xp.float64)
    if n % 2:
        return (k - (n - 1) / 2.0) / (n - 1) if n > 1 else k * 0.0
    return (k - n / 2.0) / n


def _log_gabor_bank(rows: int, cols: int, scales, norient: int, sigma_onf: float, xp):
    """The authors' ``logGabor_2D`` (after Kovesi): filters[o][s], 0 frequency at [0, 0]."""
    x, y = xp.meshgrid(_freq_range(cols, xp), _freq_range(rows, xp))
    radius = xp.sqrt(x * x + y * y)
    theta = xp.arctan2(-y, x)
    # Low-pass 1 / (1 + (r / 0.45)^(2 * 15)) on the unfudged radius.
    lp = xp.fft.ifftshift(1.0 / (1.0 + (radius / 0.45) ** 30))
    radius = xp.fft.ifftshift(radius)
    theta = xp.fft.ifftshift(theta)
    radius[0, 0] = 1.0
    sintheta = xp.sin(theta)
    costheta = xp.cos(theta)

    log_gabor = []
    denom = 2.0 * math.log(sigma_onf) ** 2
    for sc in scales:
        fo = 1.0 / (4.0 * sc)  # minWaveLength 4 times the scale factor
        g = xp.exp(-(xp.log(radius / fo) ** 2) / denom) * lp
        g[0, 0] = 0.0
        log_gabor.append(g)

    theta_sigma = math.pi / norient / 1.5
    bank = []
    for o in range(norient):
        angl = o * math.pi / norient
        ds = sintheta * math.cos(angl) - costheta * math.sin(angl)
        dc = costheta * math.cos(angl) + sintheta * math.sin(angl)
        dtheta = xp.abs(xp.arctan2(ds, dc))
        spread = xp.exp(-(dtheta * dtheta) / (2.0 * theta_sigma ** 2))
        bank.append([g * spread for g in log_gabor])
    return bank


@functools.lru_cache(maxsize=4)
def _log_gabor_bank_np(rows: int, cols: int, scales: tuple, norient: int, sigma_onf: float):
    """NumPy filter banks cached per shape (evaluation scores many ROIs of one size)."""
    bank = _log_gabor_bank(rows, cols, scales, norient, sigma_onf, np)
    for row in bank:
        for f in row:
            f.flags.writeable = False
    return bank


def lpc_si(img: Any, *, scales=(1.0, 1.5, 2.0), weights=(1.0, -3.0, 2.0), C: float = 2.0,
           beta_k: float = 1e-4, norient: int = 8, B: int | None = None) -> float:
    """Local Phase Coherence Sharpness Index (the authors' Version 1.0 ``lpc_si.m``).

    Parameters
    ----------
    img : (M, N) array
        uint8 (used as is on 0-255), uint16 (``x / 257``) or float on [0, 1] (times 255); the
        computation runs in float64 on the 0-255 scale.
    scales, weights : sequence of float
        Scale factors of the log-Gabor filters (centre frequency ``1 / (4 * scale)``) and the
        exponents of their responses in the phase-coherence product. Defaults ``[1, 3/2, 2]``
        and ``[1, -3, 2]``.
    C : float
        Stabilising constant of the LPC map (default 2).
    beta_k : float
        Decay of the rank weighting ``exp(-((i - 1)/(N - 1)) / beta_k)`` (default 1e-4).
    norient : int
        Number of orientations (default 8).
    B : int, optional
        Border cropped on each side; default ``round(min(M, N) / 16)``, halves away from zero.

    Returns
    -------
    float
        The sharpness index: near 1 for a sharp image, falling towards 0 with blur.

    Notes
    -----
    Per orientation the MATLAB code forms ``prod_s M_s .^ w_s`` with complex powers and keeps
    ``cos(angle(.))``. A complex power ``z^w = exp(w log z)`` (principal log) has angle
    ``w * angle(z)`` modulo 2 pi, so the cosine of the product's angle is computed here as
    ``cos(sum_s w_s * angle(M_s))``: the same number without the overflow of ``|M|^-3``.
    The energy of an orientation is ``|M_1|`` minus the threshold ``mean + 2 std`` (``ddof=1``)
    taken over the border-cropped region, floored at 0.

    Raises
    ------
    ValueError
        If the image is not 2-D, is empty, contains NaN/Inf, has an unsupported dtype, or leaves
        fewer than two pixels after the border crop; or if ``scales`` and ``weights`` differ in
        length.
    """
    img = _check_test(img)
    if len(scales) != len(weights) or len(scales) == 0:
        raise ValueError(f"scales and weights must be non-empty and of equal length; got "
                         f"{len(scales)} and {len(weights)}")
    xp = array_module(img)
    fft = _fft(xp)
    rows, cols = img.shape
    if B is None:
        B = int(round_half_away(min(rows, cols) / 16.0))
    if rows - 2 * B < 1 or cols - 2 * B < 1 or (rows - 2 * B) * (cols - 2 * B) < 2:
        raise ValueError(f"image of shape {(rows, cols)} is too small for LPC-SI with border {B}")
    im = _to_255(img)
    scales = tuple(float(v) for v in scales)
    if xp is np:
        bank = _log_gabor_bank_np(rows, cols, scales, int(norient), 0.75)
    else:
        bank = _log_gabor_bank(rows, cols, scales, int(norient), 0.75, xp)
    imfft = fft.fft2(im)

    num = xp.zeros((rows, cols), dtype=xp.float64)
    den = xp.zeros((rows, cols), dtype=xp.float64)
    for o in range(norient):
        phase = xp.zeros((rows, cols), dtype=xp.float64)
        e = None
        for s, w in enumerate(weights):
            m = fft.ifft2(imfft * bank[o][s])
            phase += float(w) * xp.angle(m)
            if s == 0:
                e = xp.abs(m)
        ec = e[B:rows - B, B:cols - B]
        T = xp.mean(ec) + 2.0 * xp.std(ec, ddof=1)
        e = xp.maximum(0.0, e - T)
        num += xp.maximum(xp.cos(phase), 0.0) * e
        den += e
    lpc_map = num / (den + C)
    center = lpc_map[B:rows - B, B:cols - B].ravel()
    sorted_si = xp.sort(center)[::-1]
    n = sorted_si.size
    u = xp.exp(-(xp.arange(n, dtype=xp.float64) / (n - 1)) / beta_k)
    return float(xp.sum(sorted_si * u) / xp.sum(u))


# ----------------------------------------------------------------------------------------------
# TMQI
# ----------------------------------------------------------------------------------------------

_TMQI_A, _TMQI_ALPHA, _TMQI_BETA = 0.8012, 0.3046, 0.7088
_TMQI_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_TMQI_LEVELS = 5
_WIN = 11


def _gauss1d(size: int = _WIN, sigma: float = 1.5) -> np.ndarray:
    """1-D factor of ``fspecial('gaussian', size, sigma)``; the 2-D window is its outer product."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter2_valid(x: Any, g: Any, xp) -> Any:
    """``filter2(g * g', x, 'valid')`` by two 1-D correlations (the window is separable)."""
    ndi = _ndimage(xp)
    h = g.size // 2
    y = ndi.correlate1d(x, g, axis=0, mode="constant")
    y = ndi.correlate1d(y, g, axis=1, mode="constant")
    return y[h:x.shape[0] - h, h:x.shape[1] - h]


def _downsample(x: Any, xp) -> Any:
    """``imfilter(x, ones(2)/4, 'symmetric', 'same')`` then ``(1:2:end, 1:2:end)``."""
    r, c = x.shape
    if r % 2 or c % 2:
        x = xp.pad(x, ((0, r % 2), (0, c % 2)), mode="symmetric")
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def _csf(f: float) -> float:
    """Mannos-Sakrison contrast sensitivity as the TMQI code writes it."""
    return 100.0 * 2.6 * (0.0192 + 0.114 * f) * math.exp(-((0.114 * f) ** 1.1))


def _s_local(hdr: Any, ldr: Any, g: Any, sf: float, xp) -> float:
    """Mean of the local structural-fidelity map at one scale (the authors' ``Slocal``)."""
    C1, C2 = 0.01, 10.0
    mu1 = _filter2_valid(hdr, g, xp)
    mu2 = _filter2_valid(ldr, g, xp)
    s1sq = _filter2_valid(hdr * hdr, g, xp) - mu1 * mu1
    s2sq = _filter2_valid(ldr * ldr, g, xp) - mu2 * mu2
    s1 = xp.sqrt(xp.maximum(0.0, s1sq))
    s2 = xp.sqrt(xp.maximum(0.0, s2sq))
    s12 = _filter2_valid(hdr * ldr, g, xp) - mu1 * mu2
    u = 128.0 / (1.4 * _csf(sf))
    ndtr = _ndtr(xp)
    s1p = ndtr((s1 - u) / (u / 3.0))  # normcdf(sigma1, u, u/3)
    s2p = ndtr((s2 - u) / (u / 3.0))
    smap = ((2.0 * s1p * s2p + C1) / (s1p * s1p + s2p * s2p + C1)) * ((s12 + C2) / (s1 * s2 + C2))
    return float(xp.mean(smap))


def _structural_fidelity(hdr: Any, ldr: Any, xp) -> tuple[float, list[float]]:
    g = xp.asarray(_gauss1d())
    f = 32.0
    s_local = []
    for _ in range(_TMQI_LEVELS):
        f /= 2.0
        s_local.append(_s_local(hdr, ldr, g, f, xp))
        hdr = _downsample(hdr, xp)
        ldr = _downsample(ldr, xp)
    S = 1.0
    for s, w in zip(s_local, _TMQI_WEIGHTS):
        S *= s ** w if s >= 0 else float("nan")
    return S, s_local


def _block_std_mean(x: Any, xp, block: int = _WIN) -> float:
    """``mean2(blkproc(x, [b b], @(x) std(x(:)) * ones(size(x))))``.

    ``blkproc`` zero-pads the image to whole blocks; each padded block's sample standard deviation
    (``ddof=1``, over all ``b*b`` values, zeros included) fills the block's pixels, and the result
    is cropped back to the image, so each block counts with its number of in-image pixels.
    """
    r, c = x.shape
    nr, nc = -(-r // block), -(-c // block)
    p = xp.zeros((nr * block, nc * block), dtype=xp.float64)
    p[:r, :c] = x
    blocks = p.reshape(nr, block, nc, block)
    sd = xp.std(blocks, axis=(1, 3), ddof=1)
    inside = xp.zeros((nr * block, nc * block), dtype=xp.float64)
    inside[:r, :c] = 1.0
    counts = inside.reshape(nr, block, nc, block).sum(axis=(1, 3))
    return float(xp.sum(sd * counts) / (r * c))


def _naturalness(ldr: Any, xp) -> float:
    """The authors' ``StatisticalNaturalness`` on the 0-255 test image."""
    from scipy.stats import beta as beta_dist, norm

    u = float(xp.mean(ldr))
    sig = _block_std_mean(ldr, xp)
    a, b = 4.4, 10.1
    mode = (a - 1.0) / (a + b - 2.0)
    pc = float(beta_dist.pdf(sig / 64.29, a, b) / beta_dist.pdf(mode, a, b))
    muhat, sigmahat = 115.94, 27.99
    pb = float(norm.pdf(u, muhat, sigmahat) / norm.pdf(muhat, muhat, sigmahat))
    return pb * pc


def _min_tmqi_size() -> int:
    """Smallest side whose 5th scale still holds one 11x11 window (161)."""
    n = _WIN
    for _ in range(_TMQI_LEVELS - 1):
        n = 2 * n - 1
    return n


def tmqi(reference: Any, test: Any, return_components: bool = False):
    """Tone Mapped image Quality Index (the authors' Version 1.0 ``TMQI.m``, grey images).

    Parameters
    ----------
    reference : (M, N) array
        The original image at its own bit depth, in any real dtype (e.g. 12-bit values stored as
        uint16, or float64 holding 0..4095). It is rescaled as in the authors' code,
        ``round((2^32 - 1) / (max - min)) * (L - min)`` with the factor rounded half away from
        zero, so its storage scale does not matter beyond that rounding.
    test : (M, N) array
        The 8-bit output: uint8 used as is (0-255); float taken to be on [0, 1] and multiplied by
        255; uint16 divided by 257 (neither is rounded).
    return_components : bool
        Also return the structural fidelity S and the naturalness N.

    Returns
    -------
    float or (float, float, float)
        ``Q = 0.8012 S^0.3046 + 0.1988 N^0.7088``, or ``(Q, S, N)`` when ``return_components``.

    Notes
    -----
    S: 5 scales weighted ``[0.0448, 0.2856, 0.3001, 0.2363, 0.1333]``; at each, the 11x11
    Gaussian window (sigma 1.5, normalised) in 'valid' position gives local means, standard
    deviations and covariance; ``sigma' = normcdf(sigma, u, u/3)`` with ``u = 128 / (1.4 CSF(f))``,
    ``f = 16, 8, 4, 2, 1``; the local map
    ``((2 s1' s2' + C1)/(s1'^2 + s2'^2 + C1)) ((s12 + C2)/(s1 s2 + C2))``, ``C1 = 0.01``,
    ``C2 = 10``, is averaged; between scales a 2x2 block mean with symmetric padding.
    N: ``betapdf(sig/64.29, 4.4, 10.1)`` over its mode value times
    ``normpdf(mean, 115.94, 27.99)`` over its peak, ``sig`` the mean of the 11x11 block standard
    deviations (``blkproc`` semantics, zero-padded blocks). A negative scale mean (anticorrelated
    images) makes MATLAB's S complex; here S is then NaN.

    Raises
    ------
    ValueError
        If either image is not 2-D, is empty or contains NaN/Inf; if their shapes differ; if a
        side is shorter than 161 pixels (the 5th scale would hold no 11x11 window); or if the
        reference is constant.
    """
    ref = _check(reference, "reference")
    tst = _check_test(test, "test")
    if tuple(ref.shape) != tuple(tst.shape):
        raise ValueError(f"reference and test must have the same shape; got {tuple(ref.shape)} "
                         f"and {tuple(tst.shape)}")
    nmin = _min_tmqi_size()
    if min(ref.shape) < nmin:
        raise ValueError(f"TMQI needs both sides >= {nmin} pixels (five scales of an 11x11 "
                         f"window); got shape {tuple(ref.shape)}")
    xp = array_module(ref)
    if array_module(tst) is not xp:
        raise ValueError("reference and test must both be NumPy arrays or both CuPy arrays")

    hdr = ref.astype(xp.float64)
    lmin, lmax = float(hdr.min()), float(hdr.max())
    if not lmax > lmin:
        raise ValueError("reference is constant (max == min); TMQI's rescale is undefined")
    factor = round_half_away((2.0 ** 32 - 1.0) / (lmax - lmin))
    hdr = factor * (hdr - lmin)
    ldr = _to_255(tst)

    S, _ = _structural_fidelity(hdr, ldr, xp)
    N = _naturalness(ldr, xp)
    Q = _TMQI_A * S ** _TMQI_ALPHA + (1.0 - _TMQI_A) * N ** _TMQI_BETA
    if return_components:
        return float(Q), float(S), float(N)
    return float(Q)
