import torch

from fusion.layers.segments import group_sizes_by_length, packed_segments


def test_segments_are_grouped_by_length() -> None:
    counts = torch.tensor([[0, 3], [12, 0], [10, 2]])  # runs of 3, 12, 10 and 2 tokens; T = 12
    # Calls for free: a group per unit of 8 tokens, shortest first: lengths {2, 3}, {10, 12}.
    segments = packed_segments(counts, sequence_length=12, call_cost=0)
    assert [(g.count, g.length) for g in segments.groups] == [(2, 3), (2, 12)]
    assert segments.rows[:6].tolist() == [34, 35, 35, 0, 1, 2]
    assert segments.groups[0].key_mask[:, 0, 0].tolist() == [[True, True, False], [True] * 3]
    assert segments.rows[6:].tolist() == [*range(24, 34), 33, 33, *range(12, 24)]
    expected = [3, 4, 5] + [30] * 9 + list(range(18, 30)) + list(range(6, 16)) + [0, 1]
    assert segments.inverse.tolist() == expected
    # Costly calls: one group, padded to 12.
    segments = packed_segments(counts, sequence_length=12, call_cost=1e6)
    assert [(g.count, g.length) for g in segments.groups] == [(4, 12)]


def test_grouping_weighs_padding_against_calls() -> None:
    lengths = [100] * 4 + [200]
    # One group: 5 * 200^2 + c; two: 4 * 100^2 + 200^2 + 2c. Two win while c < 120,000.
    assert group_sizes_by_length(lengths, call_cost=1e5) == [4, 1]
    assert group_sizes_by_length(lengths, call_cost=2e5) == [5]
    assert group_sizes_by_length([1, 9, 17, 250, 256], call_cost=0) == [1, 1, 1, 2]
    assert group_sizes_by_length([], call_cost=0) == []


def test_segments_of_empty_and_full_runs() -> None:
    counts = torch.tensor([[0, 3], [3, 0]])
    segments = packed_segments(counts, sequence_length=3)
    assert [(g.count, g.length, g.key_mask) for g in segments.groups] == [(2, 3, None)]
    assert segments.rows.tolist() == [0, 1, 2, 3, 4, 5]
    assert segments.inverse.tolist() == [0, 1, 2, 3, 4, 5]
