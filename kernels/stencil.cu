// Matrix-free operator apply (fused with p.Ap for PCG) and the multigrid residual,
// as stencil.apply_dot / stencil.residual of xvert_gpu/cpu/stencil.py.
#include "common.cuh"

// out = A u; dot[n] += u . A u over image n (float64; dot must be zeroed by the caller).
template <typename TU, typename TO>
__device__ __forceinline__ void xv_apply_dot_impl(const TU* __restrict__ u, const float* mass,
                                                  const float* cn, const float* cw,
                                                  const float* cnw, const float* cne,
                                                  int unit_mass, int nine, int N, int H, int W,
                                                  TO* __restrict__ out, double* __restrict__ dot) {
    const int HW = H * W;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const size_t off = (size_t)n * HW;
        const XvOp op = xv_op(mass, cn, cw, cnw, cne, unit_mass, nine, H, W, off);
        const TU* un = u + off;
        TO* on = out + off;
        double part = 0.0;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            const int y = i / W;
            const int x = i - y * W;
            const double acc = xv_apply_point(op, un, y, x);
            on[i] = (TO)acc;
            part += (double)un[i] * acc;
        }
        xv_block_add(part, dot + n);
    }
}

extern "C" __global__ void xv_apply_dot_f32(const float* u, const float* mass, const float* cn,
                                            const float* cw, const float* cnw, const float* cne,
                                            int unit_mass, int nine, int N, int H, int W,
                                            float* out, double* dot) {
    xv_apply_dot_impl<float, float>(u, mass, cn, cw, cnw, cne, unit_mass, nine, N, H, W, out,
                                    dot);
}

// PCG's q = A p: p is float32, but A's entries are up to lam / eps times b's, so a float32 q
// loses the small part of A p that the residual update needs (see krylov.pcg)
extern "C" __global__ void xv_apply_dot_f32_f64(const float* u, const float* mass,
                                                const float* cn, const float* cw,
                                                const float* cnw, const float* cne,
                                                int unit_mass, int nine, int N, int H, int W,
                                                double* out, double* dot) {
    xv_apply_dot_impl<float, double>(u, mass, cn, cw, cnw, cne, unit_mass, nine, N, H, W, out,
                                     dot);
}

extern "C" __global__ void xv_apply_dot_f64(const double* u, const float* mass, const float* cn,
                                            const float* cw, const float* cnw, const float* cne,
                                            int unit_mass, int nine, int N, int H, int W,
                                            double* out, double* dot) {
    xv_apply_dot_impl<double, double>(u, mass, cn, cw, cnw, cne, unit_mass, nine, N, H, W, out,
                                      dot);
}

// out = f - A u (f is always float64; u and out are float32 on the finest level).
template <typename TU, typename TR>
__device__ __forceinline__ void xv_residual_impl(const double* __restrict__ f,
                                                 const TU* __restrict__ u, const float* mass,
                                                 const float* cn, const float* cw,
                                                 const float* cnw, const float* cne,
                                                 int unit_mass, int nine, int N, int H, int W,
                                                 TR* __restrict__ out) {
    const int HW = H * W;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const size_t off = (size_t)n * HW;
        const XvOp op = xv_op(mass, cn, cw, cnw, cne, unit_mass, nine, H, W, off);
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            const int y = i / W;
            const int x = i - y * W;
            const double acc = xv_apply_point(op, u + off, y, x);
            out[off + i] = (TR)(f[off + i] - acc);
        }
    }
}

extern "C" __global__ void xv_residual_f32(const double* f, const float* u, const float* mass,
                                           const float* cn, const float* cw, const float* cnw,
                                           const float* cne, int unit_mass, int nine, int N,
                                           int H, int W, float* out) {
    xv_residual_impl<float, float>(f, u, mass, cn, cw, cnw, cne, unit_mass, nine, N, H, W, out);
}

extern "C" __global__ void xv_residual_f64(const double* f, const double* u, const float* mass,
                                           const float* cn, const float* cw, const float* cnw,
                                           const float* cne, int unit_mass, int nine, int N,
                                           int H, int W, double* out) {
    xv_residual_impl<double, double>(f, u, mass, cn, cw, cnw, cne, unit_mass, nine, N, H, W, out);
}
