"""Tile scheduling, offsets and implicit-GEMM index decoding shared by the kernels."""
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
def widened(x, INDEX_64: tl.constexpr):
    """`x` as int64 when the launch needs 64-bit offsets (some tensor reaches past 2^31 - 1 elements), else as is."""
    if INDEX_64:
        return x.to(tl.int64)
    else:
        return x


@triton.jit
def tile_offsets(pid, BLOCK: tl.constexpr, INDEX_64: tl.constexpr):
    """The BLOCK indices of tile `pid` along one axis, in the launch's offset width."""
    return widened(pid * BLOCK + tl.arange(0, BLOCK), INDEX_64)


@triton.jit
def gemm_tile(tile_id, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr, INDEX_64: tl.constexpr):
    """Rows and columns of linear tile `tile_id` of an M x N output (GROUP_M-swizzled), with their in-range
    masks. Returns (offs_m, offs_n, mask_m, mask_n)."""
    pid_m, pid_n = swizzled_tile(tile_id, tl.cdiv(M, BLOCK_M), tl.cdiv(N, BLOCK_N), GROUP_M)
    offs_m = tile_offsets(pid_m, BLOCK_M, INDEX_64)
    offs_n = tile_offsets(pid_n, BLOCK_N, INDEX_64)
    return offs_m, offs_n, offs_m < M, offs_n < N


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
def filter_tap(t, steps_per_tap, S):
    """Reduction step t = (r * S + s) * steps_per_tap + j walks filter tap (r, s) and, within it, step j (a
    channel block, or a channel). Returns (r * S + s, j, r, s)."""
    rs = t // steps_per_tap
    j = t - rs * steps_per_tap
    r = rs // S
    s = rs - r * S
    return rs, j, r, s


@triton.jit
def tap_rows(ih0, iw0, r, s, dil_h, dil_w, H, W, mask_m):
    """Input row/column of filter tap (r, s) for each output pixel whose window starts at (ih0, iw0), and
    whether it reads inside the image (`mask_m` and not in the padding). Returns (ih, iw, inside)."""
    ih = ih0 + r * dil_h
    iw = iw0 + s * dil_w
    return ih, iw, mask_m & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)


@triton.jit
def gather_crs(
    x_rows, w_cols, kk, CRS, ih0, iw0, mask_m, mask_n, H, W, dil_h, dil_w, sxc, sxh, sxw, swc, swr, sws,
    RS: tl.constexpr, S: tl.constexpr, OTHER: tl.constexpr,
):
    """The channel-outer implicit-GEMM step: reduction indices kk = c * (R * S) + r * S + s, decoded per element
    (no padding of C up to a block), gathered into A [rows, kk] from the input rows `x_rows` (pointers to
    channel 0 of each row's image and group) and B [kk, columns] from the filters `w_cols`; masked elements read
    OTHER (0.0 for float operands, 0 for integer ones). Returns (a, b)."""
    k_ok = kk < CRS
    c = kk // RS
    rs = kk - c * RS
    r = rs // S
    s = rs - r * S
    ih = ih0[:, None] + (r * dil_h)[None, :]
    iw = iw0[:, None] + (s * dil_w)[None, :]
    a_ok = mask_m[:, None] & k_ok[None, :] & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
    a = tl.load(x_rows[:, None] + ih * sxh + iw * sxw + (c * sxc)[None, :], mask=a_ok, other=OTHER)
    b = tl.load(w_cols[None, :] + (c * swc + r * swr + s * sws)[:, None], mask=k_ok[:, None] & mask_n[None, :], other=OTHER)
    return a, b


@triton.jit
def known_multiple(x, ALIGN: tl.constexpr):
    """`x`, which the caller knows is a multiple of ALIGN, rebuilt as (x // ALIGN) * ALIGN so that Triton's
    alignment analysis knows it too (`tl.multiple_of` cannot mark a kernel argument). Enables vector loads for
    strides the launcher does not mark (it marks multiples of 16 only), e.g. 24-channel NHWC rows."""
    return (x // ALIGN) * ALIGN


@triton.jit
def row_offsets(rows, Q, s_p, s_q, DECODE_ROWS: tl.constexpr):
    """Memory offset of each row: linear (rows * s_q), or the strided-conv gather (rows // Q, rows % Q)."""
    if DECODE_ROWS:
        return (rows // Q) * s_p + (rows % Q) * s_q
    else:
        return rows * s_q
