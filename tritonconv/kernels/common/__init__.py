"""What the kernel families share, so that no family imports another:

  * `limits`   - SMs to fill, registers and shared memory per program, tiles mostly made of padding, the
                 tile and launch parameters GEMM-shaped families tune;
  * `checks`   - refusal reasons families share (launch grid limits);
  * `conv_gemm` - the implicit-GEMM families' loop orders, weight layouts, tile constexprs and grid;
  * `tiling`   - tile scheduling, implicit-GEMM row decoding, filter-tap decoding, 32/64-bit offsets;
  * `epilogue` - operand precision, the fused activation and the one store of every output tile;
  * `tma`      - tensor descriptors (TMA) and what sm_90+ devices add.

A family module imports from here and from `kernels.base`, never from another family's module.
"""
