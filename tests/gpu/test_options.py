"""``GPUOptions``: defaults from the config, frozen, variants by ``dataclasses.replace``, clear errors (no GPU needed)."""

from __future__ import annotations

import dataclasses

import pytest

from fibquant_theory import config
from fibquant_theory.gpu import GPUOptions


def test_defaults_come_from_the_config():
    o = GPUOptions()
    assert (o.decode_layout, o.decode_columns, o.decode_replicas, o.decode_prefetch) == ("columns", 0, 0, True)
    assert (o.decode_per_lane, o.decode_chunk, o.decode_registers, o.decode_words32) == (0, 0, None, True)
    assert o.direct_launch is True
    assert o.attention_unroll == config.GPU_ATTENTION_UNROLL == 2
    assert o.attention_registers == config.GPU_ATTENTION_REGISTERS == 128
    assert o.attention_blocks_per_sm == config.GPU_ATTENTION_BLOCKS_PER_SM == 2
    assert o.attention_chunk == config.GPU_ATTENTION_CHUNK == 4096


def test_frozen_and_replace():
    o = GPUOptions()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.decode_layout = "chunks"  # type: ignore[misc]
    v = dataclasses.replace(o, decode_layout="chunks", decode_per_lane=4)
    assert (v.decode_layout, v.decode_per_lane) == ("chunks", 4) and o.decode_layout == "columns"
    assert v != o and dataclasses.replace(v, decode_layout="columns", decode_per_lane=0) == o
    assert hash(v) == hash(GPUOptions(decode_layout="chunks", decode_per_lane=4))


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"decode_layout": "diagonal"}, "decode_layout"),
        ({"decode_columns": 3}, "decode_columns .* power of two"),
        ({"decode_replicas": -2}, "decode_replicas"),
        ({"decode_chunk": 6}, "decode_chunk"),
        ({"decode_per_lane": -1}, "decode_per_lane"),
        ({"decode_columns": 2.0}, "decode_columns must be an integer"),
        ({"decode_prefetch": 1}, "decode_prefetch must be True or False"),
        ({"attention_words32": "yes"}, "attention_words32"),
        ({"decode_registers": 0}, "decode_registers"),
        ({"attention_registers": 256}, "attention_registers"),
        ({"attention_unroll": 0}, "attention_unroll must be >= 1"),
        ({"attention_blocks_per_sm": 0}, "attention_blocks_per_sm"),
        ({"attention_chunk": 0}, "attention_chunk"),
        ({"attention_unroll": True}, "attention_unroll must be an integer"),
        ({"direct_launch": 0}, "direct_launch must be True or False"),
    ],
)
def test_bad_values_are_named(changes, match):
    with pytest.raises(ValueError, match=match):
        GPUOptions(**changes)
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(GPUOptions(), **changes)


def test_accepted_values():
    GPUOptions(decode_layout="columns", decode_columns=8, decode_replicas=1, decode_chunk=32, decode_per_lane=3)
    GPUOptions(decode_registers=255, attention_registers=None, attention_unroll=3, attention_chunk=1)
