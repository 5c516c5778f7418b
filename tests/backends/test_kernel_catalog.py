"""The kernel catalogue on the CPU: sources resolve, names and launch shapes are right."""

from __future__ import annotations

import re

import pytest

from gpubp.backends import kernel_catalog as catalog


@pytest.mark.parametrize("family", catalog.FAMILIES)
def test_every_family_source_resolves_and_defines_its_kernels(family):
    path = catalog.kernel_path(family)
    assert path.name == f"{family}.cu" and path.is_file()
    source = catalog.kernel_source(family)
    for name in catalog.name_expressions(family):
        kernel = name.split("<")[0]
        assert re.search(rf"__global__ void {kernel}\(", source), f"{kernel} is not defined in {path}"


@pytest.mark.parametrize("family", catalog.FAMILIES)
def test_kernel_sources_are_self_contained(family):
    # CuPy's compile cache keys on the source text only: an include could go stale.
    assert not re.search(r"^\s*#\s*include", catalog.kernel_source(family), re.MULTILINE)


def test_every_cu_file_in_kernels_is_a_known_family():
    folder = catalog.kernel_path("activation").parent
    assert sorted(p.stem for p in folder.glob("*.cu")) == sorted(catalog.FAMILIES)


def test_unknown_family_is_named_in_the_error():
    with pytest.raises(KeyError, match="conv"):
        catalog.kernel_path("conv")
    with pytest.raises(KeyError, match="conv"):
        catalog.name_expressions("conv")


def test_name_expressions_spell_the_template_arguments():
    assert catalog.bias_act_fwd("float32", "sigmoid", 4) == "bias_act_fwd<float, 1, 4>"
    assert catalog.bias_act_fwd("float16", None, 1) == "bias_act_fwd<half_t, 0, 1>"
    assert catalog.act_bwd("float64", "relu", 2) == "act_bwd<double, 3, 2>"
    assert catalog.softmax_xent_fwd("float32", "int64") == "softmax_xent_fwd<float, long long>"
    assert catalog.sgd_multi("float16") == "sgd_multi<half_t>"
    assert catalog.adam_multi("float32") == "adam_multi<float>"
    assert catalog.act_bwd_bias("float32", None) == "act_bwd_bias<float, 0, float>"
    assert catalog.act_bwd_bias("bfloat16", "relu", "float32") == "act_bwd_bias<bf16_t, 3, float>"
    assert catalog.cast("float32", "bfloat16", 4) == "cast<float, bf16_t, 4>"
    assert catalog.accumulate_metrics("float64", "int32") == "accumulate_metrics<double, int>"
    assert catalog.dropout_mask("float64") == "dropout_mask<double>"
    assert catalog.write_words() == f"write_words<{catalog.REPLAY_WORDS}>"


def test_name_expressions_cover_every_dtype_and_are_unique():
    for family in catalog.FAMILIES:
        names = catalog.name_expressions(family)
        assert len(names) == len(set(names))
        if family == "graph":
            continue  # no dtype: it copies 8-byte words
        for ctype in catalog.FLOAT_TYPES.values():
            assert any(f"<{ctype}" in n for n in names), (family, ctype)
    # 4 dtypes x (4 forward activations x 2 widths + 3 backward x 2 widths + 4 fused bias gradients),
    # and the 2 half dtypes' 4 fused bias gradients written in float32
    assert len(catalog.name_expressions("activation")) == 4 * (8 + 6 + 4) + 2 * 4
    # 4 dtypes x 2 label types x (forward, backward, metrics)
    assert len(catalog.name_expressions("softmax_xent")) == 4 * 2 * 3
    # bfloat16 from and to each other float dtype, float16 from and to float32, at 1 and 4 elements per access
    assert len(catalog.name_expressions("cast")) == 16


def test_bias_gradient_blocks_take_two_columns_a_thread():
    across, rows = catalog.BIAS_THREADS
    assert across * 2 == catalog.BIAS_TILE and across * rows == catalog.BLOCK


def test_modules_split_each_family_by_dtype_and_cover_every_kernel():
    modules = catalog.modules()
    assert sorted(name for names in modules.values() for name in names) == sorted(
        name for family in catalog.FAMILIES for name in catalog.name_expressions(family)
    )
    for (family, dtype), names in modules.items():
        assert all(catalog.dtype_of(name) == dtype for name in names)
        assert set(names) <= set(catalog.name_expressions(family))
    assert ("activation", "float32") in modules and ("graph", None) in modules


def test_dtype_of_reads_the_first_template_argument():
    assert catalog.dtype_of("bias_act_fwd<half_t, 1, 8>") == "float16"
    assert catalog.dtype_of("softmax_xent_fwd<double, long long>") == "float64"
    assert catalog.dtype_of("write_words<480>") is None


def test_tensor_table_fields_follow_each_other_without_gaps():
    c = catalog
    assert c.TABLE_CHUNK_BEGIN == 1 and c.TABLE_SIZE == 1 + c.MULTI_TENSOR_MAX + 1
    assert c.TABLE_SCALARS == c.TABLE_REPLAY_SCALARS + 1
    assert c.TABLE_WORDS * 8 < 4096  # a kernel's arguments stay under CUDA's 4 KB


def test_chunk_begins_count_whole_chunks():
    chunk = catalog.MULTI_TENSOR_CHUNK
    assert catalog.chunk_begins([1, chunk, chunk + 1, 0]) == [0, 1, 2, 4, 4]
    assert catalog.chunk_begins([]) == [0]


@pytest.mark.parametrize(
    ("rows", "cols", "sms"), [(128, 256, 132), (4096, 4096, 132), (1, 10, 132), (0, 5, 132), (60000, 10, 4), (7, 1, 1)]
)
def test_bias_grad_grid_covers_every_row_once(rows, cols, sms):
    tiles, chunks, per_chunk = catalog.bias_grad_grid(rows, cols, sms)
    assert tiles * catalog.BIAS_TILE >= cols > (tiles - 1) * catalog.BIAS_TILE
    assert chunks * per_chunk >= rows and (chunks - 1) * per_chunk < max(rows, 1)
    assert 1 <= chunks <= 65535
    if rows <= catalog.BIAS_ROWS_PER_BLOCK_MIN:
        assert chunks == 1  # small batches: no partial sums


def test_bias_grad_grid_rejects_more_columns_than_tickets():
    with pytest.raises(ValueError, match="columns"):
        catalog.bias_grad_grid(4, catalog.TICKETS * catalog.BIAS_TILE + 1, 132)


def test_vector_width_is_sixteen_bytes():
    assert [catalog.vector_width(d) for d in ("float16", "float32", "float64")] == [8, 4, 2]


def test_pick_vector_width_needs_alignment_and_whole_rows():
    assert catalog.pick_vector_width("float32", [256, 512]) == 4
    assert catalog.pick_vector_width("float32", [256, 516]) == 1  # a view 4 bytes into an allocation
    assert catalog.pick_vector_width("float32", [256, 512], cols=12) == 4
    assert catalog.pick_vector_width("float32", [256, 512], cols=10) == 1  # a vector would straddle rows
    assert catalog.pick_vector_width("float16", [0], cols=16) == 8


@pytest.mark.parametrize(
    ("work", "sms", "expected"),
    [(0, 132, 1), (1, 132, 1), (256, 132, 1), (257, 132, 2), (10**9, 132, 132 * 8), (10**6, 1, 8)],
)
def test_grid_size_fills_the_device_once_at_most(work, sms, expected):
    assert catalog.grid_size(work, sms) == expected


def test_grid_size_rejects_a_device_without_multiprocessors():
    with pytest.raises(ValueError, match="sm_count"):
        catalog.grid_size(10, 0)


def test_values_per_counter_matches_random_cu():
    assert catalog.values_per_counter("uniform", "float32") == 4
    assert catalog.values_per_counter("uniform", "float64") == 2
    assert catalog.values_per_counter("normal", "float16") == 4
    assert catalog.values_per_counter("normal", "float64") == 2
    assert catalog.values_per_counter("dropout_mask", "float64") == 4


def test_instantiation_unit_takes_every_kernel_address():
    unit = catalog.instantiation_unit("optim")
    assert unit.startswith('#include "')
    for name in catalog.name_expressions("optim"):
        assert f"(void*)&{name}," in unit


def test_amp_kernels_are_named_and_sit_in_the_table_after_the_state():
    assert catalog.amp_unscale("float16") == "amp_unscale<half_t>"
    assert catalog.update_scale() == "update_scale<float>"
    assert catalog.advance_steps() == f"advance_steps<{catalog.STEP_LIST_MAX}>"
    assert catalog.dtype_of(catalog.advance_steps()) is None
    assert catalog.TABLE_STEP == catalog.TABLE_STATE2 + catalog.MULTI_TENSOR_MAX
    assert catalog.TABLE_FOUND_INF == catalog.TABLE_STEP + catalog.MULTI_TENSOR_MAX
    assert catalog.TABLE_REPLAY_SCALARS == catalog.TABLE_FOUND_INF + 1
    assert (2 + catalog.STEP_LIST_MAX) * 8 < 4096  # advance_steps' StepList argument
