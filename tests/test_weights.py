"""tritonconv.weights: weights re-laid-out per kernel layout and contiguous biases, prepared once per tensor
version; an in-place update invalidates the prepared copy, a freed weight frees it."""
from __future__ import annotations

import gc

import pytest
import torch

from tritonconv import weights
from tritonconv.weights import WEIGHT_LAYOUTS, contiguous_vector, prepare_weight


def random_weight(seed: int = 0, shape=(6, 4, 3, 2)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def fastest_axes(t: torch.Tensor) -> list[int]:
    """Logical axes ordered from the largest stride to the smallest (the physical order)."""
    return sorted(range(t.dim()), key=lambda d: -t.stride(d))


@pytest.mark.parametrize("layout,order", [("kcrs", [0, 1, 2, 3]), ("krsc", [0, 2, 3, 1]), ("rsck", [2, 3, 1, 0])])
def test_each_layout_keeps_the_values_and_stores_its_physical_order(layout, order):
    w = random_weight()
    prepared = prepare_weight(w, layout)
    assert prepared.shape == w.shape and torch.equal(prepared, w)
    assert fastest_axes(prepared) == order
    assert prepared.is_contiguous(memory_format=torch.contiguous_format) == (layout == "kcrs")


def test_a_cast_is_prepared_in_the_requested_dtype():
    w = random_weight()
    prepared = prepare_weight(w, "krsc", torch.float16)
    assert prepared.dtype == torch.float16
    torch.testing.assert_close(prepared.double(), w, rtol=1e-3, atol=1e-3)
    assert prepared.is_contiguous(memory_format=torch.channels_last)


def test_prepared_once_per_version_and_refreshed_after_an_in_place_update():
    w = random_weight(1)
    first = prepare_weight(w, "krsc")
    assert prepare_weight(w, "krsc") is first
    assert prepare_weight(w, "rsck") is not first and prepare_weight(w, "krsc", torch.float32) is not first
    with torch.no_grad():
        w.mul_(-2.0)  # an optimizer step
    updated = prepare_weight(w, "krsc")
    assert updated is not first and torch.equal(updated, w)
    assert not torch.equal(first, w)
    # Older versions' copies are dropped, not kept beside the new one.
    assert all(key[2] == w._version for key in weights._entries_for(w))


def test_copy_into_the_weight_invalidates():
    w = random_weight(2)
    before = prepare_weight(w, "krsc")
    source = random_weight(3)
    w.copy_(source)
    assert torch.equal(prepare_weight(w, "krsc"), source) and not torch.equal(before, source)


def test_a_weight_already_in_the_layout_and_dtype_is_not_copied():
    w = random_weight(5)
    assert prepare_weight(w, "kcrs").data_ptr() == w.data_ptr()
    assert prepare_weight(w, "kcrs", torch.float32).data_ptr() != w.data_ptr()


def test_a_freed_weight_frees_its_prepared_copies():
    w = random_weight(4)
    prepare_weight(w, "krsc")
    ident = id(w)
    assert ident in weights._prepared
    del w
    gc.collect()
    assert ident not in weights._prepared


def test_an_unknown_layout_is_refused():
    with pytest.raises(ValueError, match="unknown weight layout 'nhwc'"):
        prepare_weight(random_weight(), "nhwc")
    assert "nhwc" not in WEIGHT_LAYOUTS


def test_meta_weights_are_laid_out_without_caching():
    w = torch.empty(6, 4, 3, 2, device="meta")
    prepared = prepare_weight(w, "rsck")
    assert prepared.device.type == "meta" and fastest_axes(prepared) == [2, 3, 1, 0]
    assert id(w) not in weights._prepared


def test_contiguous_vector_is_itself_or_a_copy_made_once():
    bias = torch.randn(5, dtype=torch.float64)
    assert contiguous_vector(bias) is bias
    strided = torch.randn(10, dtype=torch.float64)[::2]
    copy = contiguous_vector(strided)
    assert copy.is_contiguous() and torch.equal(copy, strided) and contiguous_vector(strided) is copy
    with torch.no_grad():
        strided.add_(1.0)
    refreshed = contiguous_vector(strided)
    assert refreshed is not copy and torch.equal(refreshed, strided)
    column = torch.randn(4, 3, dtype=torch.float64)[:, 1]
    assert torch.equal(contiguous_vector(column), column) and contiguous_vector(column).stride() == (1,)
