"""The batch sampler: weights, per-source batches, per-epoch shuffling, determinism, resume and sharding."""

from __future__ import annotations

from collections import Counter

import pytest

from vlm2vec.data import MixtureBatchSampler


def _source_of(sampler: MixtureBatchSampler, index: int) -> int:
    return sampler.locate(index)[0]


def test_same_seed_same_order_other_seed_other_order():
    a = MixtureBatchSampler([30, 20], [1.0, 1.0], 10, seed=3, max_steps=12)
    b = MixtureBatchSampler([30, 20], [1.0, 1.0], 10, seed=3, max_steps=12)
    c = MixtureBatchSampler([30, 20], [1.0, 1.0], 10, seed=4, max_steps=12)
    assert list(a) == list(b)
    assert list(a) != list(c)


def test_every_row_once_per_epoch_and_reshuffled_each_epoch():
    s = MixtureBatchSampler([30, 20], [1.0, 1.0], 10, seed=0)
    assert s.steps_per_epoch == 5
    epoch0 = [i for step in range(5) for i in s.global_batch(step)]
    epoch1 = [i for step in range(5, 10) for i in s.global_batch(step)]
    assert sorted(epoch0) == list(range(50)) and sorted(epoch1) == list(range(50))
    assert epoch0 != epoch1


def test_weights_set_rows_per_epoch_without_replacement():
    s = MixtureBatchSampler([40, 40], [0.5, 2.0], 20, seed=1)
    assert s.counts == [20, 80] and s.steps_per_epoch == 5
    rows = [i for step in range(5) for i in s.global_batch(step)]
    per_source = Counter(_source_of(s, i) for i in rows)
    assert per_source == {0: 20, 1: 80}
    first = Counter(i for i in rows if i < 40)
    assert max(first.values()) == 1  # half of source 0, no repeats
    second = Counter(i for i in rows if i >= 40)
    assert set(second.values()) == {2}  # every row of source 1 exactly twice


def test_per_source_batches_draw_each_global_batch_from_one_source():
    s = MixtureBatchSampler(
        [25, 40, 3], [1.0, 1.0, 1.0], 8, seed=2, per_source_batches=True, names=["a", "b", "c"]
    )
    assert s.steps_per_epoch == 25 // 8 + 40 // 8
    assert s.sources_without_batches() == ["c"]
    seen = set()
    for step in range(s.steps_per_epoch):
        sources = {_source_of(s, i) for i in s.global_batch(step)}
        assert len(sources) == 1
        seen |= sources
    assert seen == {0, 1}


def test_mixed_batches_mix_sources():
    s = MixtureBatchSampler([50, 50], [1.0, 1.0], 20, seed=0)
    assert any(len({_source_of(s, i) for i in s.global_batch(step)}) == 2 for step in range(5))


def test_ranks_take_disjoint_slices_that_rebuild_the_global_batch():
    kw = dict(sizes=[30, 21], weights=[1.0, 1.0], global_batch_size=12, seed=5, max_steps=9)
    whole = list(MixtureBatchSampler(**kw))
    shards = [list(MixtureBatchSampler(**kw, num_replicas=3, rank=r)) for r in range(3)]
    assert all(len(b) == 4 for shard in shards for b in shard)
    rebuilt = [shards[0][i] + shards[1][i] + shards[2][i] for i in range(9)]
    assert rebuilt == whole


def test_resume_at_step_continues_the_exact_order():
    full = list(MixtureBatchSampler([30, 20], [1.0, 0.7], 8, seed=9, max_steps=20))
    resumed = list(MixtureBatchSampler([30, 20], [1.0, 0.7], 8, seed=9, start_step=13, max_steps=20))
    assert resumed == full[13:]


def test_too_little_data_or_bad_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="not enough rows for one global batch of 64"):
        MixtureBatchSampler([10, 20], [1.0, 1.0], 64)
    with pytest.raises(ValueError, match="not divisible by 3"):
        MixtureBatchSampler([100], [1.0], 10, num_replicas=3)
