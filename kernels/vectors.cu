// Fused PCG vector updates and dot products, float64 accumulation, as
// xvert_gpu/cpu/vectors.py; plus the per-image scalar bookkeeping of the batched solve.
//
// Batched PCG keeps every scalar on the device, one per image: the reductions add into
// arrays of shape (N,) (zeroed by the caller), the coefficients alpha = num/den and
// beta = num/den are formed by every block from those arrays, and `state[n] != 0` freezes
// image n once it has converged or broken down (state codes: see xv_pcg_check).
#include "common.cuh"

// out[n] += a[n] . b[n]
template <typename TA, typename TB>
__device__ __forceinline__ void xv_dot_impl(const TA* __restrict__ a, const TB* __restrict__ b,
                                            int N, int HW, double* __restrict__ out) {
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const size_t off = (size_t)n * HW;
        double part = 0.0;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            part += (double)a[off + i] * (double)b[off + i];
        }
        xv_block_add(part, out + n);
    }
}

extern "C" __global__ void xv_dot_f32_f32(const float* a, const float* b, int N, int HW,
                                          double* out) {
    xv_dot_impl<float, float>(a, b, N, HW, out);
}

extern "C" __global__ void xv_dot_f64_f64(const double* a, const double* b, int N, int HW,
                                          double* out) {
    xv_dot_impl<double, double>(a, b, N, HW, out);
}

extern "C" __global__ void xv_dot_f64_f32(const double* a, const float* b, int N, int HW,
                                          double* out) {
    xv_dot_impl<double, float>(a, b, N, HW, out);
}

// x += a p; r -= a q; rr[n] += ||r||^2 with a = num[n] / den[n]. Image n is skipped when
// state[n] != 0 or when den[n] is not positive (PCG breakdown; xv_pcg_check flags it).
// q = A p is float64 (xv_apply_dot_f32_f64): see krylov.pcg.
extern "C" __global__ void xv_update_solution(double* __restrict__ x, double* __restrict__ r,
                                              const float* __restrict__ p,
                                              const double* __restrict__ q, int N, int HW,
                                              const double* num, const double* den,
                                              const int* state, double* rr) {
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const double d = den[n];
        if (state[n] != 0 || !(d > 0.0)) continue;  // uniform over the block
        const double a = num[n] / d;
        const size_t off = (size_t)n * HW;
        double part = 0.0;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            const size_t k = off + i;
            x[k] += a * (double)p[k];
            const double v = r[k] - a * q[k];
            r[k] = v;
            part += v * v;
        }
        xv_block_add(part, rr + n);
    }
}

// p = z + beta p with beta = num[n] / den[n]; image n is skipped when state[n] != 0.
extern "C" __global__ void xv_update_direction(float* __restrict__ p, const float* __restrict__ z,
                                               int N, int HW, const double* num,
                                               const double* den, const int* state) {
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        if (state[n] != 0) continue;
        const double beta = num[n] / den[n];
        const size_t off = (size_t)n * HW;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            const size_t k = off + i;
            p[k] = (float)((double)z[k] + beta * (double)p[k]);
        }
    }
}

// Start of the batched PCG from x = b (r = b - A b): rr_hist[0, n] = ||r||^2 (rr0), no
// iterations done; an image whose b is zero or whose initial residual already meets the
// tolerance is done.
extern "C" __global__ void xv_pcg_init(int N, const double* bb, const double* rr0, double tol,
                                       double* rr_hist, int* state, int* iters) {
    for (int n = blockIdx.x * blockDim.x + threadIdx.x; n < N; n += gridDim.x * blockDim.x) {
        const double b2 = bb[n];
        const double r2 = rr0[n];
        rr_hist[n] = r2;
        iters[n] = 0;
        state[n] = (b2 == 0.0 || sqrt(r2) <= tol * sqrt(b2)) ? 1 : 0;
    }
}

// End of the update step of one PCG iteration, one thread per image (as krylov.pcg):
// pq = p.Ap and rr = ||r||^2 of this iteration. For an active image, it = iters[n] + 1:
//   p.Ap not positive -> state 2 (breakdown; the iteration was not applied, iters stays);
//   else rr_hist[it, n] = rr, iters[n] = it, and state 1 (converged: ||r|| <= tol ||b||) or
//   state 3 (it == maxiter) or still 0.
// Then pq, rr and rz_next (the accumulator that this iteration's r.z goes to) are zeroed for
// every image, so that no launch argument changes from one iteration to the next but the
// parity of the r.z slot (a CUDA graph of two iterations can be replayed).
extern "C" __global__ void xv_pcg_check(int N, int maxiter, double* pq, double* rr,
                                        double* rz_next, const double* bb, double tol,
                                        int* state, int* iters, double* rr_hist) {
    for (int n = blockIdx.x * blockDim.x + threadIdx.x; n < N; n += gridDim.x * blockDim.x) {
        const double pqn = pq[n];
        const double rrn = rr[n];
        pq[n] = 0.0;
        rr[n] = 0.0;
        rz_next[n] = 0.0;
        if (state[n] != 0) continue;
        if (!(pqn > 0.0)) {
            state[n] = 2;
            continue;
        }
        const int it = iters[n] + 1;
        rr_hist[(size_t)it * N + n] = rrn;
        iters[n] = it;
        if (sqrt(rrn) <= tol * sqrt(bb[n])) {
            state[n] = 1;
        } else if (it >= maxiter) {
            state[n] = 3;
        }
    }
}
