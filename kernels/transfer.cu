// Operator-dependent grid transfers (Dendy's BoxMG), the Galerkin coarse operator and the
// coarsest-level direct solve, as xvert_gpu/cpu/transfer.py.
//
// Coarse points are the fine points with both indices even. Fine point (y, x) interpolates
// from the corners of its coarse cell; pw[n, k, y, x] is the weight of corner
// k: 0 = (y/2, x/2), 1 = (y/2, x/2 + 1), 2 = (y/2 + 1, x/2), 3 = (y/2 + 1, x/2 + 1).
#include "common.cuh"

// Pass 1: every point that is not a cell centre (y, x both odd); cell centres get zeros
// here and their weights from xv_interp_centres, which must run after this kernel.
extern "C" __global__ void xv_interp_edges(const float* mass, const float* cn, const float* cw,
                                           const float* cnw, const float* cne, int unit_mass,
                                           int nine, int N, int H, int W,
                                           float* __restrict__ pw) {
    const int HW = H * W;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const size_t off = (size_t)n * HW;
        const XvOp op = xv_op(mass, cn, cw, cnw, cne, unit_mass, nine, H, W, off);
        float* p = pw + 4 * off;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            const int y = i / W;
            const int x = i - y * W;
            float w0 = 0.0f, w1 = 0.0f, w2 = 0.0f, w3 = 0.0f;
            if (y % 2 == 0 && x % 2 == 0) {
                w0 = 1.0f;
            } else if (y % 2 == 0 || x % 2 == 0) {
                const XvCoup c = xv_neighbours(op, y, x);
                const double diag = xv_diag(op, i, c);
                if (y % 2 == 0) {  // between two coarse points of one row
                    const double den = diag - c.n - c.s;
                    if (den > 0.0) {
                        w0 = (float)((c.nw + c.w + c.sw) / den);
                        if (x + 1 < W) w1 = (float)((c.ne + c.e + c.se) / den);
                    }
                } else {  // between two coarse points of one column
                    const double den = diag - c.w - c.e;
                    if (den > 0.0) {
                        w0 = (float)((c.nw + c.n + c.ne) / den);
                        if (y + 1 < H) w2 = (float)((c.sw + c.s + c.se) / den);
                    }
                }
            }
            p[i] = w0;
            p[HW + i] = w1;
            p[2 * HW + i] = w2;
            p[3 * HW + i] = w3;
        }
    }
}

// Pass 2: cell centres (y, x both odd) interpolate through the pass-1 weights around them.
extern "C" __global__ void xv_interp_centres(const float* mass, const float* cn, const float* cw,
                                             const float* cnw, const float* cne, int unit_mass,
                                             int nine, int N, int H, int W, float* pw) {
    const int HW = H * W;
    const int hc = H / 2;  // odd rows 1, 3, ... < H
    const int wc = W / 2;  // odd columns
    const int count = hc * wc;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const size_t off = (size_t)n * HW;
        const XvOp op = xv_op(mass, cn, cw, cnw, cne, unit_mass, nine, H, W, off);
        float* p0 = pw + 4 * off;
        float* p1 = p0 + HW;
        float* p2 = p1 + HW;
        float* p3 = p2 + HW;
        const int stride = gridDim.x * blockDim.x;
        for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < count; t += stride) {
            const int cy = t / wc;
            const int y = 2 * cy + 1;
            const int x = 2 * (t - cy * wc) + 1;
            const int i = y * W + x;
            const XvCoup c = xv_neighbours(op, y, x);
            const double diag = xv_diag(op, i, c);
            double a0 = c.nw + c.n * (double)p0[i - W] + c.w * (double)p0[i - 1];
            double a1 = c.n * (double)p1[i - W];
            double a2 = c.w * (double)p2[i - 1];
            double a3 = 0.0;
            if (x + 1 < W) {
                a1 += c.ne + c.e * (double)p0[i + 1];
                a3 += c.e * (double)p2[i + 1];
            }
            if (y + 1 < H) {
                a2 += c.sw + c.s * (double)p0[i + W];
                a3 += c.s * (double)p1[i + W];
            }
            if (x + 1 < W && y + 1 < H) a3 += c.se;
            p0[i] = (float)(a0 / diag);
            p1[i] = (float)(a1 / diag);
            p2[i] = (float)(a2 / diag);
            p3[i] = (float)(a3 / diag);
        }
    }
}

// rc = P^T r. On the finest level r is float32 and each product pw * r is a float32
// product, as in NumPy; sums are float64.
template <typename TR>
__device__ __forceinline__ void xv_restrict_impl(const TR* __restrict__ r,
                                                 const float* __restrict__ pw, int N, int H,
                                                 int W, int Hc, int Wc, double* __restrict__ rc) {
    const int HW = H * W;
    const int HWc = Hc * Wc;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const TR* rn = r + (size_t)n * HW;
        const float* p = pw + (size_t)n * 4 * HW;
        for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < HWc; t += gridDim.x * blockDim.x) {
            const int I = t / Wc;
            const int J = t - I * Wc;
            const int y0 = 2 * I - 1 > 0 ? 2 * I - 1 : 0;
            const int y1 = 2 * I + 2 < H ? 2 * I + 2 : H;
            const int x0 = 2 * J - 1 > 0 ? 2 * J - 1 : 0;
            const int x1 = 2 * J + 2 < W ? 2 * J + 2 : W;
            double acc = 0.0;
            // fine row 2I-1 sees (I, J) as its lower corners (k = 2, 3), rows 2I, 2I+1 as upper
            for (int y = y0; y < y1; ++y) {
                const int kd = y < 2 * I ? 2 : 0;
                for (int x = x0; x < x1; ++x) {
                    const int k = x < 2 * J ? kd + 1 : kd;
                    const TR prod = (TR)p[(size_t)k * HW + y * W + x] * rn[y * W + x];
                    acc += (double)prod;
                }
            }
            rc[(size_t)n * HWc + t] = acc;
        }
    }
}

extern "C" __global__ void xv_restrict_f32(const float* r, const float* pw, int N, int H, int W,
                                           int Hc, int Wc, double* rc) {
    xv_restrict_impl<float>(r, pw, N, H, W, Hc, Wc, rc);
}

extern "C" __global__ void xv_restrict_f64(const double* r, const float* pw, int N, int H, int W,
                                           int Hc, int Wc, double* rc) {
    xv_restrict_impl<double>(r, pw, N, H, W, Hc, Wc, rc);
}

// rc = P^T (f - A u) where the residual is known to vanish on the odd columns (the
// pre-smoothing ends with exact solves of the odd columns): the residual is computed on the
// even columns only, inside the restriction, and never stored, as
// transfer.restrict_residual_even_columns. f is float64; u is float32 on the finest level.
template <typename TU>
__device__ __forceinline__ void xv_restrict_residual_impl(const double* __restrict__ f,
                                                          const TU* __restrict__ u,
                                                          const float* mass, const float* cn,
                                                          const float* cw, const float* cnw,
                                                          const float* cne, int unit_mass,
                                                          int nine, const float* __restrict__ pw,
                                                          int N, int H, int W, int Hc, int Wc,
                                                          double* __restrict__ rc) {
    const int HW = H * W;
    const int HWc = Hc * Wc;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const size_t off = (size_t)n * HW;
        const XvOp op = xv_op(mass, cn, cw, cnw, cne, unit_mass, nine, H, W, off);
        const double* fn = f + off;
        const TU* un = u + off;
        const float* p = pw + 4 * off;
        for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < HWc; t += gridDim.x * blockDim.x) {
            const int I = t / Wc;
            const int x = 2 * (t - I * Wc);
            const int y0 = 2 * I - 1 > 0 ? 2 * I - 1 : 0;
            const int y1 = 2 * I + 2 < H ? 2 * I + 2 : H;
            double acc = 0.0;
            for (int y = y0; y < y1; ++y) {
                const int k = y < 2 * I ? 2 : 0;
                const double r = fn[y * W + x] - xv_apply_point(op, un, y, x);
                acc += (double)p[(size_t)k * HW + y * W + x] * r;
            }
            rc[(size_t)n * HWc + t] = acc;
        }
    }
}

extern "C" __global__ void xv_restrict_residual_f32(const double* f, const float* u,
                                                    const float* mass, const float* cn,
                                                    const float* cw, const float* cnw,
                                                    const float* cne, int unit_mass, int nine,
                                                    const float* pw, int N, int H, int W, int Hc,
                                                    int Wc, double* rc) {
    xv_restrict_residual_impl<float>(f, u, mass, cn, cw, cnw, cne, unit_mass, nine, pw, N, H, W,
                                     Hc, Wc, rc);
}

extern "C" __global__ void xv_restrict_residual_f64(const double* f, const double* u,
                                                    const float* mass, const float* cn,
                                                    const float* cw, const float* cnw,
                                                    const float* cne, int unit_mass, int nine,
                                                    const float* pw, int N, int H, int W, int Hc,
                                                    int Wc, double* rc) {
    xv_restrict_residual_impl<double>(f, u, mass, cn, cw, cnw, cne, unit_mass, nine, pw, N, H, W,
                                      Hc, Wc, rc);
}

// u += P uc.
template <typename TU>
__device__ __forceinline__ void xv_prolong_add_impl(const double* __restrict__ uc,
                                                    const float* __restrict__ pw, int N, int H,
                                                    int W, int Hc, int Wc, TU* __restrict__ u) {
    const int HW = H * W;
    const int HWc = Hc * Wc;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const double* cn = uc + (size_t)n * HWc;
        const float* p = pw + (size_t)n * 4 * HW;
        TU* un = u + (size_t)n * HW;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            const int y = i / W;
            const int x = i - y * W;
            const int I = y >> 1;
            const int J = x >> 1;
            const int ic = I * Wc + J;
            double acc = (double)p[i] * cn[ic];
            if (J + 1 < Wc) {
                acc += (double)p[HW + i] * cn[ic + 1];
                if (I + 1 < Hc) acc += (double)p[3 * HW + i] * cn[ic + Wc + 1];
            }
            if (I + 1 < Hc) acc += (double)p[2 * HW + i] * cn[ic + Wc];
            un[i] = (TU)((double)un[i] + acc);
        }
    }
}

extern "C" __global__ void xv_prolong_add_f32(const double* uc, const float* pw, int N, int H,
                                              int W, int Hc, int Wc, float* u) {
    xv_prolong_add_impl<float>(uc, pw, N, H, W, Hc, Wc, u);
}

extern "C" __global__ void xv_prolong_add_f64(const double* uc, const float* pw, int N, int H,
                                              int W, int Hc, int Wc, double* u) {
    xv_prolong_add_impl<double>(uc, pw, N, H, W, Hc, Wc, u);
}

// p1 = P 1 (row sums of P), summed in float32 like the CPU.
extern "C" __global__ void xv_pw_row_sums(const float* __restrict__ pw, int N, int H, int W,
                                          float* __restrict__ p1) {
    const int HW = H * W;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const float* p = pw + (size_t)n * 4 * HW;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            p1[(size_t)n * HW + i] = p[i] + p[HW + i] + p[2 * HW + i] + p[3 * HW + i];
        }
    }
}

// a[k][y, x] of one image's (k, H, W) array, zero outside the grid.
__device__ __forceinline__ double xv_at(const float* a, int k, int HW, int H, int W, int y,
                                        int x) {
    return (y >= 0 && y < H && x >= 0 && x < W) ? (double)a[k * HW + y * W + x] : 0.0;
}

// Coarse operator P^T A P in the same symmetric 9-point form, as transfer.galerkin of the CPU
// backend: one thread per coarse point (I, J) forms S = (A P)[:, (I, J)] on the 5x5 window of
// fine points from (2I-2, 2J-2), then projects it on the interpolation weights of the coarse
// neighbours N, W, NW, NE, and on P 1 for the row sum (difference form).
extern "C" __global__ void xv_galerkin(const float* mass, const float* cn, const float* cw,
                                       const float* cnw, const float* cne, int unit_mass,
                                       int nine, const float* __restrict__ pw,
                                       const float* __restrict__ p1, int N, int H, int W, int Hc,
                                       int Wc, float* __restrict__ mc, float* __restrict__ cnc,
                                       float* __restrict__ cwc, float* __restrict__ cnwc,
                                       float* __restrict__ cnec) {
    const int HW = H * W;
    const int HWc = Hc * Wc;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const size_t off = (size_t)n * HW;
        const XvOp op = xv_op(mass, cn, cw, cnw, cne, unit_mass, nine, H, W, off);
        const float* p = pw + 4 * off;
        const float* s1 = p1 + off;
        for (int t = blockIdx.x * blockDim.x + threadIdx.x; t < HWc; t += gridDim.x * blockDim.x) {
            const int I = t / Wc;
            const int J = t - I * Wc;
            const int y0 = 2 * I - 2;
            const int x0 = 2 * J - 2;
            double S[5][5];
            for (int a = 0; a < 5; ++a)
                for (int b = 0; b < 5; ++b) S[a][b] = 0.0;
            for (int a = 1; a < 4; ++a) {
                const int y = y0 + a;
                if (y < 0 || y >= H) continue;
                for (int b = 1; b < 4; ++b) {
                    const int x = x0 + b;
                    if (x < 0 || x >= W) continue;
                    // corner (I, J) of fine point (y, x)
                    const double pij = (double)p[(2 * (a == 1) + (b == 1)) * HW + y * W + x];
                    if (pij == 0.0) continue;
                    const XvCoup c = xv_neighbours(op, y, x);
                    S[a][b] += pij * xv_diag(op, y * W + x, c);
                    S[a - 1][b] -= pij * c.n;
                    S[a + 1][b] -= pij * c.s;
                    S[a][b - 1] -= pij * c.w;
                    S[a][b + 1] -= pij * c.e;
                    if (nine) {
                        S[a - 1][b - 1] -= pij * c.nw;
                        S[a - 1][b + 1] -= pij * c.ne;
                        S[a + 1][b - 1] -= pij * c.sw;
                        S[a + 1][b + 1] -= pij * c.se;
                    }
                }
            }
            double a_n = 0.0, a_w = 0.0, a_nw = 0.0, a_ne = 0.0;
            for (int a = 0; a < 2; ++a) {  // rows 2I-2, 2I-1: below coarse row I-1
                const int y = y0 + a;
                for (int b = 0; b < 2; ++b) {  // columns 2J-2, 2J-1: right of coarse column J-1
                    const double s = S[a][b];
                    a_n += s * xv_at(p, 1, HW, H, W, y, x0 + b);
                    a_w += s * xv_at(p, 2, HW, H, W, y, x0 + b);
                    a_nw += s * xv_at(p, 0, HW, H, W, y, x0 + b);
                }
                for (int b = 2; b < 4; ++b) {
                    const double s = S[a][b];
                    a_n += s * xv_at(p, 0, HW, H, W, y, x0 + b);
                    a_ne += s * xv_at(p, 1, HW, H, W, y, x0 + b);
                }
                a_ne += S[a][4] * xv_at(p, 0, HW, H, W, y, x0 + 4);
            }
            for (int a = 2; a < 4; ++a)
                for (int b = 0; b < 2; ++b) a_w += S[a][b] * xv_at(p, 0, HW, H, W, y0 + a, x0 + b);
            double rowsum = 0.0;
            for (int a = 0; a < 5; ++a)
                for (int b = 0; b < 5; ++b) rowsum += S[a][b] * xv_at(s1, 0, HW, H, W, y0 + a, x0 + b);
            const size_t o = (size_t)n * HWc + t;
            mc[o] = (float)rowsum;
            cnc[o] = (float)(-a_n);
            cwc[o] = (float)(-a_w);
            cnwc[o] = (float)(-a_nw);
            cnec[o] = (float)(-a_ne);
        }
    }
}

// The level's operator as dense (N, H*W, H*W) float64 matrices, for the coarsest direct
// solve; one thread per matrix row, which it writes whole.
extern "C" __global__ void xv_dense_matrix(const float* mass, const float* cn, const float* cw,
                                           const float* cnw, const float* cne, int unit_mass,
                                           int nine, int N, int H, int W,
                                           double* __restrict__ A) {
    const int HW = H * W;
    const long long total = (long long)N * HW;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const int n = (int)(t / HW);
        const int i = (int)(t - (long long)n * HW);
        const int y = i / W;
        const int x = i - y * W;
        const XvOp op = xv_op(mass, cn, cw, cnw, cne, unit_mass, nine, H, W, (size_t)n * HW);
        double* row = A + (size_t)t * HW;
        for (int j = 0; j < HW; ++j) row[j] = 0.0;
        const XvCoup c = xv_neighbours(op, y, x);
        row[i] = xv_diag(op, i, c);
        if (c.n != 0.0) row[i - W] = -c.n;
        if (c.s != 0.0) row[i + W] = -c.s;
        if (c.w != 0.0) row[i - 1] = -c.w;
        if (c.e != 0.0) row[i + 1] = -c.e;
        if (c.nw != 0.0) row[i - W - 1] = -c.nw;
        if (c.ne != 0.0) row[i - W + 1] = -c.ne;
        if (c.sw != 0.0) row[i + W - 1] = -c.sw;
        if (c.se != 0.0) row[i + W + 1] = -c.se;
    }
}

// u = A^-1 f at the coarsest level, with invT[n] the transposed inverse (so that the
// threads of one image, one per row i, read invT[n, j, i] coalesced).
template <typename TU>
__device__ __forceinline__ void xv_coarse_solve_impl(const double* __restrict__ invT,
                                                     const double* __restrict__ f, int N, int M,
                                                     TU* __restrict__ u) {
    const long long total = (long long)N * M;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += stride) {
        const int n = (int)(t / M);
        const int i = (int)(t - (long long)n * M);
        const double* a = invT + (size_t)n * M * M + i;
        const double* fn = f + (size_t)n * M;
        double acc = 0.0;
        for (int j = 0; j < M; ++j) acc += a[(size_t)j * M] * fn[j];
        u[t] = (TU)acc;
    }
}

extern "C" __global__ void xv_coarse_solve_f32(const double* invT, const double* f, int N, int M,
                                               float* u) {
    xv_coarse_solve_impl<float>(invT, f, N, M, u);
}

extern "C" __global__ void xv_coarse_solve_f64(const double* invT, const double* f, int N, int M,
                                               double* u) {
    xv_coarse_solve_impl<double>(invT, f, N, M, u);
}
