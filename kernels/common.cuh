// Shared device helpers of the xvert_gpu kernels (see xvert_gpu/cpu/stencil.py for the math).
//
// Layout: every kernel works on a stack of N images of one shape (H, W), each array
// C-contiguous as (N, H, W) (interpolation weights: (N, 4, H, W)). Images are walked by
// `blockIdx.y` in a loop (so any N works), pixels of one image by a grid-stride loop over
// `blockIdx.x`; kernels with one thread per line use one flattened index over all images.
// Per-image offsets are size_t; indices inside one image are int (H * W < 2^30, checked by
// the Python side).
//
// A symmetric 9-point operator is stored as mass (row sum of A) and the couplings to the
// north cn (y-1, x), west cw (y, x-1), north-west cnw and north-east cne; the southern and
// eastern couplings follow by symmetry. `unit_mass` means mass == 1 (the finest level: the
// array is then not read), `nine == 0` means a 5-point operator (cnw, cne not read).
//
// Everything that the CPU backend computes in float64 is computed in double here, in the
// same order, so that both backends agree to rounding.
#ifndef XV_COMMON_CUH
#define XV_COMMON_CUH

// Couplings (n, s, w, e, nw, ne, sw, se) of one pixel; zero across the image border.
struct XvCoup {
    double n, s, w, e, nw, ne, sw, se;
};

// Pointers of one image of one level.
struct XvOp {
    const float* mass;
    const float* cn;
    const float* cw;
    const float* cnw;
    const float* cne;
    int unit_mass;
    int nine;
    int H;
    int W;
};

__device__ __forceinline__ XvOp xv_op(const float* mass, const float* cn, const float* cw,
                                      const float* cnw, const float* cne, int unit_mass,
                                      int nine, int H, int W, size_t off) {
    XvOp op;
    op.mass = unit_mass ? mass : mass + off;  // unused arrays may be placeholders: no offset
    op.cn = cn + off;
    op.cw = cw + off;
    op.cnw = nine ? cnw + off : cnw;
    op.cne = nine ? cne + off : cne;
    op.unit_mass = unit_mass;
    op.nine = nine;
    op.H = H;
    op.W = W;
    return op;
}

__device__ __forceinline__ double xv_mass(const XvOp& op, int i) {
    return op.unit_mass ? 1.0 : (double)op.mass[i];
}

__device__ __forceinline__ XvCoup xv_neighbours(const XvOp& op, int y, int x) {
    const int H = op.H, W = op.W, i = y * W + x;
    XvCoup c;
    c.n = y > 0 ? (double)op.cn[i] : 0.0;
    c.s = y + 1 < H ? (double)op.cn[i + W] : 0.0;
    c.w = x > 0 ? (double)op.cw[i] : 0.0;
    c.e = x + 1 < W ? (double)op.cw[i + 1] : 0.0;
    c.nw = 0.0;
    c.ne = 0.0;
    c.sw = 0.0;
    c.se = 0.0;
    if (op.nine) {
        if (y > 0 && x > 0) c.nw = (double)op.cnw[i];
        if (y > 0 && x + 1 < W) c.ne = (double)op.cne[i];
        if (y + 1 < H && x > 0) c.sw = (double)op.cne[i + W - 1];
        if (y + 1 < H && x + 1 < W) c.se = (double)op.cnw[i + W + 1];
    }
    return c;
}

// Diagonal entry of A: mass plus all couplings (summed in the CPU's order).
__device__ __forceinline__ double xv_diag(const XvOp& op, int i, const XvCoup& c) {
    return xv_mass(op, i) + c.n + c.s + c.w + c.e + c.nw + c.ne + c.sw + c.se;
}

// (A u)_i in difference form: m u_i + sum_j c_ij (u_i - u_j).
template <typename TU>
__device__ __forceinline__ double xv_apply_point(const XvOp& op, const TU* u, int y, int x) {
    const int H = op.H, W = op.W, i = y * W + x;
    const XvCoup c = xv_neighbours(op, y, x);
    const double ui = (double)u[i];
    double acc = xv_mass(op, i) * ui;
    if (y > 0) acc += c.n * (ui - (double)u[i - W]);
    if (y + 1 < H) acc += c.s * (ui - (double)u[i + W]);
    if (x > 0) acc += c.w * (ui - (double)u[i - 1]);
    if (x + 1 < W) acc += c.e * (ui - (double)u[i + 1]);
    if (op.nine) {
        if (y > 0 && x > 0) acc += c.nw * (ui - (double)u[i - W - 1]);
        if (y > 0 && x + 1 < W) acc += c.ne * (ui - (double)u[i - W + 1]);
        if (y + 1 < H && x > 0) acc += c.sw * (ui - (double)u[i + W - 1]);
        if (y + 1 < H && x + 1 < W) acc += c.se * (ui - (double)u[i + W + 1]);
    }
    return acc;
}

#ifdef XV_HOST_EMULATION
// The test-suite's host emulation runs the threads of a block one after another, so a
// block reduction is a plain atomic add per thread there.
__device__ __forceinline__ void xv_block_add(double v, double* out) { atomicAdd(out, v); }
#else
__device__ __forceinline__ double xv_warp_sum(double v) {
    for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
    return v;
}

// Adds the sum of `v` over the block to *out (one double atomicAdd per block).
// Every thread of the block must call it; blockDim.x must be a multiple of 32.
__device__ __forceinline__ void xv_block_add(double v, double* out) {
    __shared__ double part[32];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    v = xv_warp_sum(v);
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        const int nwarps = (int)(blockDim.x >> 5);
        v = lane < nwarps ? part[lane] : 0.0;
        v = xv_warp_sum(v);
        if (lane == 0) atomicAdd(out, v);
    }
    __syncthreads();  // part[] is reused by the next call
}
#endif

#endif  // XV_COMMON_CUH
