"""Tile scheduling and implicit-GEMM row decoding shared by the GEMM-shaped kernels."""
import triton
import triton.language as tl


@triton.jit
def swizzled_tile(tile_id, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """(pid_m, pid_n) of a linear tile id, GROUP_M row-tiles at a time so neighbours share B columns in L2."""
    num_pid_in_group = GROUP_M * num_pid_n
    first_pid_m = (tile_id // num_pid_in_group) * GROUP_M
    group_size_m = tl.minimum(num_pid_m - first_pid_m, GROUP_M)
    pid_m = first_pid_m + ((tile_id % num_pid_in_group) % group_size_m)
    pid_n = (tile_id % num_pid_in_group) // group_size_m
    return pid_m, pid_n


@triton.jit
def output_pixels(offs_m, P, Q, stride_h, stride_w, pad_h, pad_w):
    """Implicit-GEMM row m = (n * P + p) * Q + q is output pixel (n, p, q); its input window starts at
    (ih0, iw0) = (p * stride_h - pad_h, q * stride_w - pad_w). Returns (n, p, q, ih0, iw0)."""
    n_idx = offs_m // (P * Q)
    pq = offs_m % (P * Q)
    p_idx = pq // Q
    q_idx = pq % Q
    return n_idx, p_idx, q_idx, p_idx * stride_h - pad_h, q_idx * stride_w - pad_w


@triton.jit
def known_multiple(x, ALIGN: tl.constexpr):
    """`x`, which the caller knows is a multiple of ALIGN, rebuilt as (x // ALIGN) * ALIGN so that Triton's
    alignment analysis knows it too (`tl.multiple_of` cannot mark a kernel argument). Enables vector loads for
    strides the launcher does not mark (it marks multiples of 16 only), e.g. 24-channel NHWC rows."""
    return (x // ALIGN) * ALIGN
