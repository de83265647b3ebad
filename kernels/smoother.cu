// Zebra line Gauss-Seidel: Thomas factors of every row and column block of A (set up once)
// and the exact solves along the rows / columns of one parity, as lines.line_factors,
// lines.relax_rows and lines.relax_cols of xvert_gpu/cpu/lines.py.
//
// One thread per line. For the column sweeps neighbouring threads take neighbouring
// columns and walk down the rows together, so their loads are coalesced; the forward
// elimination keeps its float64 intermediates in `dp`, a scratch array of (at least) N*H*W
// doubles laid out line-index-fastest so that those stores are coalesced for both sweeps.
#include "common.cuh"

// Row y: inv = 1 / (diag - w * cp[x-1]), cp = e * inv (cp carried in double, as the CPU).
// Column x: the same with n, s, where cp[y-1] is read back as the float32 stored value.
// The sweeps eliminate as el[x] = rhs[x] + cp[x-1] el[x-1], then el[x] * inv[x] (the Thomas
// recurrence multiplied through by the pivot), with the stored float32 cp standing for the
// coupling, as the CPU does: both then solve the same symmetric L D L^T.
// Threads 0 .. N*H-1 take the rows, N*H .. N*(H+W)-1 the columns.
extern "C" __global__ void xv_line_factors(const float* mass, const float* cn, const float* cw,
                                           const float* cnw, const float* cne, int unit_mass,
                                           int nine, int N, int H, int W,
                                           float* __restrict__ rcp, float* __restrict__ rinv,
                                           float* __restrict__ ccp, float* __restrict__ cinv) {
    const long long rows = (long long)N * H;
    const long long total = rows + (long long)N * W;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        if (t < rows) {
            const int n = (int)(t / H);
            const int y = (int)(t - (long long)n * H);
            const size_t off = (size_t)n * H * W;
            const XvOp op = xv_op(mass, cn, cw, cnw, cne, unit_mass, nine, H, W, off);
            double prev = 0.0;
            for (int x = 0; x < W; ++x) {
                const int i = y * W + x;
                const XvCoup c = xv_neighbours(op, y, x);
                const double inv = 1.0 / (xv_diag(op, i, c) - c.w * prev);
                prev = c.e * inv;
                rinv[off + i] = (float)inv;
                rcp[off + i] = (float)prev;
            }
        } else {
            const long long tc = t - rows;
            const int n = (int)(tc / W);
            const int x = (int)(tc - (long long)n * W);
            const size_t off = (size_t)n * H * W;
            const XvOp op = xv_op(mass, cn, cw, cnw, cne, unit_mass, nine, H, W, off);
            float prev = 0.0f;
            for (int y = 0; y < H; ++y) {
                const int i = y * W + x;
                const XvCoup c = xv_neighbours(op, y, x);
                const double inv = 1.0 / (xv_diag(op, i, c) - c.n * (double)prev);
                prev = (float)(c.s * inv);
                cinv[off + i] = (float)inv;
                ccp[off + i] = prev;
            }
        }
    }
}

// Exact solve along every row y = parity + 2k: A_yy u_y = f_y + (couplings to rows y-1, y+1).
template <typename TU>
__device__ __forceinline__ void xv_relax_rows_impl(const double* __restrict__ f, TU* u,
                                                   const float* cn, const float* cw,
                                                   const float* cnw, const float* cne, int nine,
                                                   int N, int H, int W,
                                                   const float* __restrict__ rcp,
                                                   const float* __restrict__ rinv, int parity,
                                                   double* __restrict__ dp) {
    const int nrows = (H - parity + 1) / 2;
    const long long total = (long long)N * nrows;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const int n = (int)(t / nrows);
        const int k = (int)(t - (long long)n * nrows);
        const int y = parity + 2 * k;
        const size_t off = (size_t)n * H * W;
        const XvOp op = xv_op(cn, cn, cw, cnw, cne, 1, nine, H, W, off);
        const double* fn = f + off;
        TU* un = u + off;
        double* dn = dp + off;  // dn[x * nrows + k]
        double prev = 0.0;
        double el = 0.0;  // the elimination before the pivot: el[x] = rhs[x] + cp[x-1] el[x-1]
        for (int x = 0; x < W; ++x) {
            const int i = y * W + x;
            const XvCoup c = xv_neighbours(op, y, x);
            double acc = 0.0;  // couplings outside row y
            if (y > 0) {
                acc += c.n * (double)un[i - W];
                if (nine) {
                    if (x > 0) acc += c.nw * (double)un[i - W - 1];
                    if (x + 1 < W) acc += c.ne * (double)un[i - W + 1];
                }
            }
            if (y + 1 < H) {
                acc += c.s * (double)un[i + W];
                if (nine) {
                    if (x > 0) acc += c.sw * (double)un[i + W - 1];
                    if (x + 1 < W) acc += c.se * (double)un[i + W + 1];
                }
            }
            const double rhs = fn[i] + acc;
            el = x > 0 ? rhs + (double)rcp[off + i - 1] * el : rhs;
            prev = el * (double)rinv[off + i];
            dn[(size_t)x * nrows + k] = prev;
        }
        double val = prev;
        un[y * W + W - 1] = (TU)val;
        for (int x = W - 2; x >= 0; --x) {
            val = dn[(size_t)x * nrows + k] + (double)rcp[off + y * W + x] * val;
            un[y * W + x] = (TU)val;
        }
    }
}

// Exact solve along every column x = parity + 2j.
template <typename TU>
__device__ __forceinline__ void xv_relax_cols_impl(const double* __restrict__ f, TU* u,
                                                   const float* cn, const float* cw,
                                                   const float* cnw, const float* cne, int nine,
                                                   int N, int H, int W,
                                                   const float* __restrict__ ccp,
                                                   const float* __restrict__ cinv, int parity,
                                                   double* __restrict__ dp) {
    const int ncols = (W - parity + 1) / 2;
    const long long total = (long long)N * ncols;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const int n = (int)(t / ncols);
        const int j = (int)(t - (long long)n * ncols);
        const int x = parity + 2 * j;
        const size_t off = (size_t)n * H * W;
        const XvOp op = xv_op(cn, cn, cw, cnw, cne, 1, nine, H, W, off);
        const double* fn = f + off;
        TU* un = u + off;
        double* dn = dp + off;  // dn[y * ncols + j]
        double prev = 0.0;
        double el = 0.0;  // the elimination before the pivot: el[y] = rhs[y] + cp[y-1] el[y-1]
        for (int y = 0; y < H; ++y) {
            const int i = y * W + x;
            const XvCoup c = xv_neighbours(op, y, x);
            double rhs = fn[i];
            if (x > 0) {
                rhs += c.w * (double)un[i - 1];
                if (nine) {
                    if (y > 0) rhs += c.nw * (double)un[i - W - 1];
                    if (y + 1 < H) rhs += c.sw * (double)un[i + W - 1];
                }
            }
            if (x + 1 < W) {
                rhs += c.e * (double)un[i + 1];
                if (nine) {
                    if (y > 0) rhs += c.ne * (double)un[i - W + 1];
                    if (y + 1 < H) rhs += c.se * (double)un[i + W + 1];
                }
            }
            el = y > 0 ? rhs + (double)ccp[off + i - W] * el : rhs;
            prev = el * (double)cinv[off + i];
            dn[(size_t)y * ncols + j] = prev;
        }
        // back substitution reads the stored (TU) value below, as the CPU does; the product
        // is taken in TU precision like NumPy's float32 * float32
        TU val = (TU)prev;
        un[(H - 1) * W + x] = val;
        for (int y = H - 2; y >= 0; --y) {
            const TU prod = (TU)ccp[off + y * W + x] * val;
            val = (TU)(dn[(size_t)y * ncols + j] + (double)prod);
            un[y * W + x] = val;
        }
    }
}

extern "C" __global__ void xv_relax_rows_f32(const double* f, float* u, const float* cn,
                                             const float* cw, const float* cnw, const float* cne,
                                             int nine, int N, int H, int W, const float* rcp,
                                             const float* rinv, int parity, double* dp) {
    xv_relax_rows_impl<float>(f, u, cn, cw, cnw, cne, nine, N, H, W, rcp, rinv, parity, dp);
}

extern "C" __global__ void xv_relax_rows_f64(const double* f, double* u, const float* cn,
                                             const float* cw, const float* cnw, const float* cne,
                                             int nine, int N, int H, int W, const float* rcp,
                                             const float* rinv, int parity, double* dp) {
    xv_relax_rows_impl<double>(f, u, cn, cw, cnw, cne, nine, N, H, W, rcp, rinv, parity, dp);
}

extern "C" __global__ void xv_relax_cols_f32(const double* f, float* u, const float* cn,
                                             const float* cw, const float* cnw, const float* cne,
                                             int nine, int N, int H, int W, const float* ccp,
                                             const float* cinv, int parity, double* dp) {
    xv_relax_cols_impl<float>(f, u, cn, cw, cnw, cne, nine, N, H, W, ccp, cinv, parity, dp);
}

extern "C" __global__ void xv_relax_cols_f64(const double* f, double* u, const float* cn,
                                             const float* cw, const float* cnw, const float* cne,
                                             int nine, int N, int H, int W, const float* ccp,
                                             const float* cinv, int parity, double* dp) {
    xv_relax_cols_impl<double>(f, u, cn, cw, cnw, cne, nine, N, H, W, ccp, cinv, parity, dp);
}
