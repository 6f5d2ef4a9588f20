"""Corpus embedding and hard-negative mining: filters, strategies, exact search, resume, train.py reads it."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from launching import launch
from vlm2vec.config import Config, DataConfig, EmbedConfig, MineConfig, PairSourceConfig, load_config
from vlm2vec.corpus import embed_corpus, filter_candidates, pick, read_store, topk_exact
from vlm2vec.corpus.mine import run_mine
from vlm2vec.corpus.mine_stats import REASONS
from vlm2vec.corpus.sources import CorpusError, content_of, image_folder_corpus, normalize_text
from vlm2vec.data import PairDataset, read_mmeb_train
from vlm2vec.encoding.cache import RepCache
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import tiny_model_config

WORKER = Path(__file__).parent / "dist_scripts" / "corpus_worker.py"


def _codes(names):
    return [REASONS.index(n) if n in REASONS else {"kept": -1, "none": -2}[n] for n in names]


def test_margin_filter_drops_exactly_the_candidates_above_positive_plus_margin():
    # one query, positive score 0.5; five distinct candidates (ids 0..4, no key / content / class match)
    scores = np.array([[0.875, 0.75, 0.625, 0.5625, 0.25]])
    cand = np.array([[0, 1, 2, 3, 4]])
    ids = np.arange(5)
    none = np.full(5, -1)
    args = dict(
        cand_key=ids, cand_content=ids, cand_class=none, pos_key=np.array([9]), pos_content=np.array([9])
    )
    pos = dict(pos_class=np.array([-1]), pos_score=np.array([0.5]))
    # margin +0.125: threshold 0.625 -> 0.875 and 0.75 dropped; 0.625 is not *above* it and stays
    reason = filter_candidates(scores, cand, **args, **pos, margin=0.125)
    assert reason.tolist() == [_codes(["above_margin", "above_margin", "kept", "kept", "kept"])]
    # margin -0.25: threshold 0.25 -> everything above 0.25 dropped, 0.25 kept
    reason = filter_candidates(scores, cand, **args, **pos, margin=-0.25)
    assert reason.tolist() == [_codes(["above_margin"] * 4 + ["kept"])]
    reason = filter_candidates(scores, cand, **args, **pos, margin=None)
    assert reason.tolist() == [_codes(["kept"] * 5)]


def test_filters_name_positive_content_and_class_first_and_skip_padding():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, -np.inf]])
    cand = np.array([[3, 2, 1, 0, -1]])
    key = np.array([10, 11, 12, 13])  # candidate 3 is the positive (key 13)
    content = np.array([20, 21, 22, 23])  # candidate 2 shares the positive's content (23)
    content[2] = 23
    klass = np.array([-1, 30, -1, 31])  # candidate 1 shares the positive's class (30)
    kwargs = dict(pos_key=np.array([13]), pos_content=np.array([23]), pos_class=np.array([30]))
    reason = filter_candidates(
        scores, cand, key, content, klass, **kwargs, pos_score=np.array([0.95]), margin=0.0
    )
    assert reason.tolist() == [_codes(["positive", "same_content", "same_class", "kept", "none"])]
    reason = filter_candidates(
        scores,
        cand,
        key,
        content,
        klass,
        **kwargs,
        pos_score=np.array([0.95]),
        margin=0.0,
        filter_class=False,
    )
    assert reason.tolist() == [_codes(["positive", "same_content", "kept", "kept", "none"])]


def test_pick_strategies_top_range_and_seeded_sample():
    kept = np.array([False, True, True, False, True, True, True])  # kept ranks 1..5 at positions 1,2,4,5,6
    assert pick(kept, "top", 3).tolist() == [1, 2, 4]
    assert pick(kept, "range", 2, rank_start=2, rank_end=4).tolist() == [2, 4]
    assert pick(kept, "range", 5, rank_start=4, rank_end=9).tolist() == [5, 6]
    a, b = pick(kept, "sample", 3, seed=[1, 2, 3]), pick(kept, "sample", 3, seed=[1, 2, 3])
    assert a.tolist() == b.tolist() and len(set(a.tolist())) == 3 and set(a.tolist()) <= {1, 2, 4, 5, 6}
    draws = {tuple(pick(kept, "sample", 3, seed=[s]).tolist()) for s in range(20)}
    assert len(draws) > 1  # the seed matters


def test_blockwise_topk_equals_a_full_sort():
    g = torch.Generator().manual_seed(0)
    q, c = torch.randn(37, 8, generator=g), torch.randn(301, 8, generator=g)
    scores, idx = topk_exact(q, c, 7, query_block=5, corpus_block=16)
    ref_s, ref_i = (q @ c.T).topk(7, dim=1)
    assert torch.allclose(scores, ref_s, atol=1e-6) and torch.equal(idx, ref_i)
    scores, idx = topk_exact(q, c[:4], 7)  # fewer candidates than k
    assert idx.shape == (37, 4)


# --------------------------------------------------------------------------------------------------
# end to end on a tiny model
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tiny_qwen_dir):
    return EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir))


def _image(path: Path, colour: str, size=(40, 32)) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path.name


def _pairs_file(tmp_path: Path) -> Path:
    """Rows whose targets collide on purpose, each caught by one filter only: the same item (key), the
    same image under another instruction or the same text restyled (content, other labels), and
    different texts with the same class label (class)."""
    colours = ["red", "green", "blue", "yellow", "purple", "orange"]
    for c in colours:
        _image(tmp_path / "img" / f"{c}.png", c)
    rows = []
    for c in colours:
        rows.append({"q": f"which colour is the {c} thing", "t": f"a {c} thing", "label": c, "img": ""})
        rows.append({"q": f"name the colour {c}", "t": f"the colour {c}", "label": c, "img": ""})
        rows.append(
            {
                "q": f"show {c}",
                "t": "<|image_1|>\nRepresent the image.",
                "label": f"img-{c}-1",
                "img": f"img/{c}.png",
            }
        )
        rows.append(
            {
                "q": f"picture of {c}",
                "t": "<|image_1|>\nDescribe it.",
                "label": f"img-{c}-2",
                "img": f"img/{c}.png",
            }
        )
    rows.append({"q": "repeat red", "t": "a red thing", "label": "red", "img": ""})  # the item of row 0
    rows.append(
        {"q": "shout red", "t": "A  Red thing.", "label": "caps", "img": ""}
    )  # row 0's text, restyled
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _mine_config(tmp_path: Path, model_dir: Path, pairs: Path, **mine) -> Config:
    data = DataConfig(
        pairs=[
            PairSourceConfig(
                name="p", path=str(pairs), qry_text="q", qry_image=None, pos_text="t", pos_image="img"
            )
        ]
    )
    cfg = Config(
        data=data,
        embed=EmbedConfig(batch_size=4),
        mine=MineConfig(output_dir=str(tmp_path / "mined"), **mine),
    )
    cfg.model = tiny_model_config("qwen2_vl", model_dir)
    return cfg


def test_mined_negatives_never_hold_the_positive_its_content_or_its_class(tmp_path, tiny_qwen_dir):
    pairs = _pairs_file(tmp_path)
    cfg = _mine_config(
        tmp_path,
        tiny_qwen_dir,
        pairs,
        top_k=100,
        num_negatives=100,
        margin=None,
        keep_short=True,
        label_column="label",
    )
    stats = run_mine(cfg)
    # the pool really held every kind of false negative, and each was filtered
    assert all(stats.filtered[r] > 0 for r in ("positive", "same_content", "same_class")), stats.filtered
    labels = {
        json.loads(line)["t"] + "|" + json.loads(line)["img"]: json.loads(line)["label"]
        for line in pairs.open()
    }
    table = pq.read_table(tmp_path / "mined" / "train" / "p" / "original-00000-of-00001.parquet").to_pylist()
    assert len(table) == 26
    for row in table:
        pos_img = Path(row["pos_image_path"]).name if row["pos_image_path"] else ""
        pos = (row["pos_text"], pos_img)
        assert row["neg_text"], row
        for text, image in zip(row["neg_text"], row["neg_image_path"]):
            neg = (text, Path(image).name if image else "")
            assert neg != pos
            if pos[1]:
                assert neg[1] != pos[1], (row, neg)  # same image file = same content
            else:
                assert neg[1] or normalize_text(neg[0]) != normalize_text(pos[0]), (row, neg)
            neg_label = labels[text + "|" + (f"img/{neg[1]}" if neg[1] else "")]
            pos_label = labels[row["pos_text"] + "|" + (f"img/{pos[1]}" if pos[1] else "")]
            assert neg_label != pos_label, (row, neg)
    report = (tmp_path / "mined" / "report.md").read_text()
    assert "same class name" in report and (tmp_path / "mined" / "report.png").stat().st_size > 1000

    # candidates from an external corpus (an embedded image folder): the positive's image file is caught
    # whatever its relative path there; the folder's sub-folder labels are class names
    ecfg = EmbedConfig(batch_size=4)
    model = EmbeddingModel.from_config(cfg.model)
    embed_corpus(model, image_folder_corpus(tmp_path / "img", "<|image_1|>\nAny."), tmp_path / "corpus", ecfg)
    cfg.mine = MineConfig(
        output_dir=str(tmp_path / "mined2"), corpus_dir=str(tmp_path / "corpus"), scope="all", top_k=100,
        num_negatives=100, margin=None, keep_short=True, label_column="label",
    )  # fmt: skip
    stats = run_mine(cfg)
    assert stats.filtered["same_content"] == 12  # the 12 image rows each meet their own file
    table = pq.read_table(tmp_path / "mined2" / "train" / "p" / "original-00000-of-00001.parquet").to_pylist()
    for row in table:
        if row["pos_image_path"]:
            assert Path(row["pos_image_path"]).resolve() not in [
                Path(p).resolve() for p in row["neg_image_path"]
            ]
            assert len(row["neg_image_path"]) == 5


def test_train_reads_mined_files_with_k_negatives(tmp_path, tiny_qwen_dir):
    from vlm2vec.testing.synthetic import write_synthetic_mmeb_train

    root = write_synthetic_mmeb_train(
        tmp_path / "train", subsets={"ImageNet_1K": "classification"}, rows_per_subset=12, splits=["original"]
    )
    cfg = load_config(
        None,
        [f"--data.mmeb_train_dir={root}", f"--mine.output_dir={tmp_path / 'mined'}", "--mine.num_negatives=2",
         "--mine.margin=null", "--embed.batch_size=6"],
    )  # fmt: skip
    cfg.model = tiny_model_config("qwen2_vl", tiny_qwen_dir)
    stats = run_mine(cfg)
    assert stats.rows_written == 12
    sources = read_mmeb_train(tmp_path / "mined" / "train", image_root=root)
    example = PairDataset(sources, num_negatives=2)[3]  # images decoded, two negatives per row
    assert len(example.negs) == 2 and example.qry.images
    table = pq.read_table(tmp_path / "mined" / "train" / "ImageNet_1K" / "original-00000-of-00001.parquet")
    row = table.slice(3, 1).to_pylist()[0]
    assert [n.text for n in example.negs] == row["neg_text"] and row["neg_score"] == sorted(row["neg_score"])[
        ::-1
    ]


def test_embed_killed_mid_run_and_resumed_gives_the_uninterrupted_vectors(tmp_path, tiny_model, monkeypatch):
    for i, c in enumerate(["red", "green", "blue", "white", "black", "gray", "pink"]):
        _image(tmp_path / "imgs" / ("cls_a" if i % 2 else "cls_b") / f"{i}.png", c, (32 + 4 * i, 40))
    corpus = image_folder_corpus(tmp_path / "imgs", "<|image_1|>\nRepresent the given image.")
    assert corpus.label[:2] == ["cls_a", "cls_a"] and len(corpus) == 7
    ecfg = EmbedConfig(batch_size=2, chunk_items=2, shard_rows=3)
    encoded = []
    encode = tiny_model.encode
    monkeypatch.setattr(tiny_model, "encode", lambda x: encoded.append(len(x["input_ids"])) or encode(x))
    embed_corpus(tiny_model, corpus, tmp_path / "fresh", ecfg)
    assert sum(encoded) == 7

    saves = []
    save = RepCache.save

    def failing_save(self, keys, reps):
        if len(saves) == 2:
            raise KeyboardInterrupt("killed after 2 chunks")
        saves.append(len(keys))
        return save(self, keys, reps)

    monkeypatch.setattr(RepCache, "save", failing_save)
    encoded.clear()
    with pytest.raises(KeyboardInterrupt):
        embed_corpus(tiny_model, corpus, tmp_path / "resumed", ecfg)
    assert not (tmp_path / "resumed" / "manifest.json").exists()  # a killed run is not complete
    with pytest.raises(CorpusError, match="no manifest.json"):
        read_store(tmp_path / "resumed")
    monkeypatch.setattr(RepCache, "save", save)
    encoded.clear()
    embed_corpus(tiny_model, corpus, tmp_path / "resumed", ecfg)
    assert sum(encoded) == 7 - sum(saves) == 3  # only the chunks no file held were encoded again

    fresh_v, fresh_t, fresh_m = read_store(tmp_path / "fresh")
    res_v, res_t, res_m = read_store(tmp_path / "resumed")
    assert torch.equal(fresh_v, res_v) and fresh_t.equals(res_t) and len(res_m["shards"]) == 3
    assert fresh_t.column("image").to_pylist()[0] == "cls_a/1.png"
    assert content_of(corpus.items[0]) != content_of(corpus.items[1])


def test_a_replaced_image_is_encoded_afresh_and_the_rest_comes_from_the_cache(
    tmp_path, tiny_model, monkeypatch
):
    for i, c in enumerate(["red", "green", "blue"]):
        _image(tmp_path / "imgs" / "cls" / f"{i}.png", c, (32 + 4 * i, 40))
    ecfg = EmbedConfig(batch_size=1, chunk_items=1)
    corpus = image_folder_corpus(tmp_path / "imgs", "<|image_1|>")
    embed_corpus(tiny_model, corpus, tmp_path / "out", ecfg)
    before, _, _ = read_store(tmp_path / "out")
    encoded = []
    encode = tiny_model.encode
    monkeypatch.setattr(tiny_model, "encode", lambda x: encoded.append(len(x["input_ids"])) or encode(x))
    embed_corpus(tiny_model, corpus, tmp_path / "out", ecfg)
    assert encoded == []  # unchanged files: up to date
    _image(tmp_path / "imgs" / "cls" / "1.png", "yellow", (36, 40))  # same path, new content
    embed_corpus(tiny_model, image_folder_corpus(tmp_path / "imgs", "<|image_1|>"), tmp_path / "out", ecfg)
    after, _, _ = read_store(tmp_path / "out")
    assert encoded == [1]  # only the replaced image
    assert torch.equal(before[0], after[0]) and torch.equal(before[2], after[2])
    assert not torch.allclose(before[1], after[1])


@pytest.mark.slow
def test_two_process_embed_and_mine_equal_one_process(tmp_path, tiny_qwen_dir):
    from vlm2vec.testing.synthetic import write_synthetic_mmeb_train

    root = write_synthetic_mmeb_train(
        tmp_path / "train",
        subsets={"ImageNet_1K": "classification", "MSCOCO_i2t": "retrieval_i2t"},
        rows_per_subset=10,
        splits=["original"],
    )
    outs = {}
    for nproc in (1, 2):
        out = tmp_path / f"n{nproc}"
        launch(WORKER, str(tiny_qwen_dir), str(root), str(out), nproc=nproc, timeout=300)
        outs[nproc] = out
    for side in ("qry", "tgt"):
        v1, t1, _ = read_store(outs[1] / "embeddings" / side)
        v2, t2, _ = read_store(outs[2] / "embeddings" / side)
        assert torch.equal(v1, v2) and t1.equals(t2)
    for subset in ("ImageNet_1K", "MSCOCO_i2t"):
        name = Path("train") / subset / "original-00000-of-00001.parquet"
        assert pq.read_table(outs[1] / name).equals(pq.read_table(outs[2] / name))
    ranks = [json.loads((outs[2] / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["encoded"] > 0 for r in ranks)  # both processes encoded part of the corpus


def test_entry_points_parse_the_one_config_and_name_bad_keys(tmp_path, capsys):
    from vlm2vec.commands import main as vlm2vec

    def command(name):
        return lambda argv: vlm2vec([name, *argv])

    embed, mine = command("embed"), command("mine")

    cases = [
        (mine, ["--mine.strategy=best"], "mine.strategy: 'best'"),
        (mine, [f"--mine.corpus_dir={tmp_path}"], "mine.scope=source needs the training targets"),
        (mine, ["--mine.topk=3"], "unknown config key 'mine.topk'"),
        (
            mine,
            ["--mine.rank_start=3"],
            "mine.rank_start is read only with mine.strategy=range, not top",
        ),
        (mine, ["--mine.seed=3"], "mine.seed is read only with mine.strategy=sample, not top"),
        (
            embed,
            ["--embed.source=images", f"--embed.path={tmp_path / 'nope'}"],
            f"image folder not found: {tmp_path / 'nope'}",
        ),
        (embed, ["--embed.source=video"], "embed.source: 'video'"),
        (  # settings the chosen source would ignore
            embed,
            ["--embed.source=texts", f"--embed.path={tmp_path}", "--embed.side=qry"],
            "embed.side is read only with embed.source=train, not texts",
        ),
        (
            embed,
            ["--embed.image_text=<|image_1|> x"],
            "embed.image_text is read only with embed.source=images",
        ),
    ]
    for main, argv, message in cases:
        assert main(argv) == 2, argv  # an expected error: exit status 2, one line on stderr
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (argv, err)
