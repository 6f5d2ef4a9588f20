"""The batch sampler: weights, same-source runs and their presets, per-epoch shuffling, determinism,
resume and sharding."""

from __future__ import annotations

from collections import Counter

import pytest
from torch.utils.data import DataLoader, Dataset

from vlm2vec.config import ConfigError, DataConfig
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


def test_whole_batch_runs_draw_each_global_batch_from_one_source():
    s = MixtureBatchSampler([25, 40, 3], [1.0, 1.0, 1.0], 8, seed=2, run_length=8, names=["a", "b", "c"])
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


GLOBAL = 256
SIZES = [512, 512, 512, 512, 384, 640]  # six sources; weights below make their shares unequal
WEIGHTS = [1.0, 1.0, 0.5, 2.0, 1.0, 1.0]


def _preset_sampler(preset: str, **kw) -> MixtureBatchSampler:
    size = DataConfig(sub_batch=preset).run_length(GLOBAL)
    return MixtureBatchSampler(SIZES, WEIGHTS, GLOBAL, seed=11, run_length=size, **kw)


def _runs(sampler: MixtureBatchSampler, step: int) -> list[list[int]]:
    """The source of each row of a global batch, cut at every change of source."""
    runs: list[list[int]] = []
    for i in sampler.global_batch(step):
        source = _source_of(sampler, i)
        if runs and runs[-1][0] == source:
            runs[-1].append(source)
        else:
            runs.append([source])
    return runs


@pytest.mark.parametrize(
    ("preset", "run", "most_sources"), [("paper", 64, 4), ("release", 128, 2), ("source", 256, 1)]
)
def test_source_histogram_of_global_batches_under_each_preset(preset, run, most_sources):
    s = _preset_sampler(preset)
    assert s.run_length == run
    distinct = Counter()
    for step in range(5 * s.steps_per_epoch):
        runs = _runs(s, step)
        # every stretch of one source is a whole number of runs, starting at a run boundary
        assert all(len(r) % run == 0 for r in runs)
        distinct[len({r[0] for r in runs})] += 1
    assert max(distinct) <= most_sources
    assert max(distinct) == most_sources  # runs' sources are drawn independently: batches do mix


def test_iid_preset_mixes_every_source_in_most_batches_and_weights_set_the_shares():
    s = _preset_sampler("iid")
    assert s.run_length == 1
    rows = Counter()
    steps = 5 * s.steps_per_epoch
    for step in range(steps):
        sources = [_source_of(s, i) for i in s.global_batch(step)]
        rows.update(sources)
        assert len(_runs(s, step)) > 64  # no long runs: rows are drawn one by one
    assert len({src for src in rows}) == 6
    share = [rows[i] / (steps * GLOBAL) for i in range(6)]
    expected = [w * n / sum(w * n for w, n in zip(WEIGHTS, SIZES)) for w, n in zip(WEIGHTS, SIZES)]
    assert share == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("preset", ["paper", "release"])
def test_run_presets_honour_the_weights_over_many_batches(preset):
    s = _preset_sampler(preset)
    rows = Counter()
    epochs = 8
    for step in range(epochs * s.steps_per_epoch):
        rows.update(_source_of(s, i) for i in s.global_batch(step))
    total = sum(rows.values())
    expected = [w * n / sum(w * n for w, n in zip(WEIGHTS, SIZES)) for w, n in zip(WEIGHTS, SIZES)]
    assert [rows[i] / total for i in range(6)] == pytest.approx(expected, abs=0.06)


@pytest.mark.parametrize("preset", ["iid", "paper", "release", "source"])
def test_one_and_two_processes_see_the_same_global_batches(preset):
    one = list(_preset_sampler(preset, max_steps=30))
    two = [list(_preset_sampler(preset, max_steps=30, num_replicas=2, rank=r)) for r in range(2)]
    assert [a + b for a, b in zip(*two)] == one


class _Rows(Dataset):
    def __len__(self) -> int:
        return sum(SIZES)

    def __getitem__(self, index: int) -> int:
        return index


@pytest.mark.parametrize("workers", [1, 2])
def test_dataloader_workers_do_not_change_the_batches(workers):
    def batches(num_workers: int) -> list[list[int]]:
        sampler = _preset_sampler("paper", max_steps=9, num_replicas=2, rank=1)
        loader = DataLoader(_Rows(), batch_sampler=sampler, num_workers=num_workers, collate_fn=list)
        return list(loader)

    assert batches(workers) == batches(0)


@pytest.mark.parametrize("preset", ["paper", "release"])
def test_resume_in_the_middle_of_a_run_continues_the_exact_order(preset):
    full = list(_preset_sampler(preset, max_steps=40, num_replicas=2, rank=0))
    middle = 17  # inside the second epoch (12 steps per epoch)
    resumed = list(_preset_sampler(preset, start_step=middle, max_steps=40, num_replicas=2, rank=0))
    assert resumed == full[middle:]


@pytest.mark.parametrize(
    ("setting", "batch", "message"),
    [
        (512, 256, "data.sub_batch: a run of 512 rows is larger than the global batch of 256"),
        (96, 256, "data.sub_batch: a run of 96 rows does not divide the global batch of 256"),
        ("paper", 32, "data.sub_batch: a run of paper \\(64 rows\\) is larger than the global batch of 32"),
        ("release", 33, "data.sub_batch: a run of release \\(16 rows\\) does not divide"),
    ],
)
def test_run_length_that_does_not_fit_the_global_batch_is_a_one_line_config_error(setting, batch, message):
    with pytest.raises(ConfigError, match=message) as err:
        DataConfig(sub_batch=setting).run_length(batch)
    assert "\n" not in str(err.value) and err.value.key == "data.sub_batch"


@pytest.mark.parametrize("setting", ["papers", 0])
def test_unknown_preset_or_zero_run_is_a_config_error(setting):
    with pytest.raises(ConfigError, match="data.sub_batch"):
        DataConfig(sub_batch=setting).validate()


@pytest.mark.parametrize("run_length", [1, 8])
def test_share_weights_give_each_source_its_share_whatever_its_size(run_length):
    """`weight_mode="share"`: sources of 64 and 1,024 rows with weights 1 and 3 bring a quarter and
    three quarters of the epoch's rows (the small source drawn again as it runs out); `rows` mode
    would give 64 and 3,072."""
    s = MixtureBatchSampler([64, 1024], [1.0, 3.0], 32, run_length=run_length, weight_mode="share")
    rows = Counter(s.locate(i)[0] for b in s.epoch_batches(0) for i in b)
    total = rows[0] + rows[1]
    assert total == s.steps_per_epoch * 32
    assert abs(rows[0] / total - 0.25) < 0.02 and abs(rows[1] / total - 0.75) < 0.02
    assert s.state_dict()["weight_mode"] == "share"
    plain = MixtureBatchSampler([64, 1024], [1.0, 3.0], 32, run_length=run_length)
    assert plain.counts == [64, 3072]
