// WLS smoothness weights (SPEC section 2, Eq. 3), as xvert_gpu/cpu/weights.py.
#include "common.cuh"

// lam / (|d|^alpha + eps); the log difference d is taken in double (it cancels), its power
// in float, exactly as the CPU backend does.
__device__ __forceinline__ float xv_edge_weight(double d, double lam, double alpha, double eps) {
    if (d == 0.0) return (float)(lam / eps);
    const float p = expf((float)alpha * logf((float)d));
    return (float)(lam / ((double)p + eps));
}

// cn[y, x] couples (y, x) to (y-1, x), cw[y, x] to (y, x-1); both are zero on the first
// row / column. l = log(img + delta) in double.
extern "C" __global__ void xv_wls_weights(const float* __restrict__ img, int N, int H, int W,
                                          double lam, double alpha, double eps, double delta,
                                          float* __restrict__ cn, float* __restrict__ cw) {
    const int HW = H * W;
    for (int n = blockIdx.y; n < N; n += gridDim.y) {
        const size_t off = (size_t)n * HW;
        const float* im = img + off;
        for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < HW; i += gridDim.x * blockDim.x) {
            const int y = i / W;
            const int x = i - y * W;
            const double l = log((double)im[i] + delta);
            float wx = 0.0f;
            float wy = 0.0f;
            if (x > 0) {
                wx = xv_edge_weight(fabs(l - log((double)im[i - 1] + delta)), lam, alpha, eps);
            }
            if (y > 0) {
                wy = xv_edge_weight(fabs(l - log((double)im[i - W] + delta)), lam, alpha, eps);
            }
            cw[off + i] = wx;
            cn[off + i] = wy;
        }
    }
}
