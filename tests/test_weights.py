import math

import torch
from torch import nn

from course_utils.weights import grid_bits, levels_per_block


def test_levels_per_block_counts_distinct_values_per_block():
    w = torch.tensor([[0.0, 0.0, 1.0, 2.0], [3.0, 3.0, 3.0, 3.0]])
    assert levels_per_block(w, block=4).tolist() == [3, 1]
    assert levels_per_block(w, block=2).tolist() == [1, 2, 1, 1]


def test_grid_bits_tells_a_4bit_grid_from_fresh_weights():
    torch.manual_seed(0)
    fresh = nn.Linear(64, 32)
    snapped = nn.Linear(64, 32)
    with torch.no_grad():  # round every block of 32 to one of 16 levels, as a 4-bit format does
        blocks = snapped.weight.reshape(-1, 32)
        lo, hi = blocks.amin(1, keepdim=True), blocks.amax(1, keepdim=True)
        codes = torch.round((blocks - lo) / (hi - lo) * 15)
        snapped.weight.copy_((lo + codes * (hi - lo) / 15).reshape_as(snapped.weight))
    bits = grid_bits(nn.Sequential(fresh, snapped))
    assert bits["0"] == math.log2(32)
    assert bits["1"] <= 4


def test_levels_per_block_reads_only_the_first_blocks_when_asked():
    w = torch.arange(12.0)
    assert levels_per_block(w, block=4, max_blocks=2).tolist() == [4, 4]


def test_grid_bits_skips_the_output_head():
    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.body, self.head = nn.Linear(32, 32), nn.Linear(32, 32)

        def get_output_embeddings(self):
            return self.head

    assert set(grid_bits(Tiny())) == {"body"}
