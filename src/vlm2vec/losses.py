"""InfoNCE over the global batch: in-batch and hard negatives, false-negative masking, cross-rank gather.

The loss follows VLM2Vec (see docs/gradcache.md): query i of the *global* batch (all ranks, rank order)
must pick target i among every target of the global batch (plus every hard negative), with logits
`q . t / temperature` on L2-normalised reps.

Distributed exactness: every rank gathers all reps, keeps the autograd history of its own shard only,
and computes the same full-batch loss. The gradient reaching rank r's reps is then exactly
d loss / d (rank r's reps); DDP and DeepSpeed *average* parameter gradients over ranks, so the gradient
is multiplied by world_size (the value returned stays the true global loss, so logs are comparable
across world sizes). The backward pass needs no collective, which GradCache relies on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from vlm2vec.distributed import gather_no_grad, gather_with_grad, scale_grad, world
from vlm2vec.matryoshka import truncate_reps

if TYPE_CHECKING:
    from vlm2vec.config import Config

KeysLike = torch.Tensor | Sequence[Any]


def content_key(text: str | None, images: str | Sequence[str] | None = None) -> int:
    """A stable 63-bit integer identity of an item (text + image paths), equal on every process.

    Python's `hash` is salted per process, so keys that travel between ranks are hashed with blake2b.
    """
    if images is None or images == "":
        paths: tuple[str, ...] = ()
    elif isinstance(images, str):
        paths = (images,)
    else:
        paths = tuple(str(p) for p in images if p)
    digest = hashlib.blake2b(repr((text or "", paths)).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def content_keys(records: Iterable[tuple[str | None, str | Sequence[str] | None]]) -> torch.Tensor:
    """Keys (LongTensor) for `(text, image_path_or_paths)` records, for false-negative masking."""
    return torch.tensor([content_key(text, images) for text, images in records], dtype=torch.long)


def as_keys(keys: KeysLike, device: torch.device) -> torch.Tensor:
    """Turn keys given as a LongTensor, ints, or other hashables (hashed stably) into a LongTensor."""
    if isinstance(keys, torch.Tensor):
        return keys.to(device=device, dtype=torch.long)
    values = [k if isinstance(k, int) else content_key(repr(k)) for k in keys]
    return torch.tensor(values, dtype=torch.long, device=device)


class ContrastiveLoss:
    """InfoNCE query -> target over the global batch.

    Args:
        temperature: logits are `similarity / temperature` (VLM2Vec uses 0.02, fixed).
        gather: gather reps (and keys) from all ranks so every global target is a negative. Each rank
            then holds the global reps (N x H floats, N = global batch) and computes the full N x N
            (+ hard negatives) logit matrix: memory and compute O(N^2), negligible next to the model
            for N up to a few thousand. With `False` each rank contrasts only against its local batch
            (fewer negatives, and no world_size gradient scaling).
        mask_false_negatives: for query i, drop (set to -inf) every in-batch target or hard negative whose
            content key equals the key of one of i's own positives, except the positives themselves.
            Needs `tgt_keys` (and `neg_keys` to mask hard negatives; `qry_keys` to also mask duplicate
            queries in the symmetric term). Cost: an N x (N + M) boolean mask and the int64 key gather.
            `masked` then holds how many (query, candidate) pairs the last call dropped (global batch).
        symmetric: add the target -> query InfoNCE term (targets pick their query among all queries)
            and average the two. With masking, target j's softmax drops every other query with a
            positive of j's content key (as in the forward term) and, given `qry_keys`, every
            duplicate of j's query. Cost: a second N x N logit matrix.
        hardness_alpha: hardness weighting (LLaVE): add `alpha * stop_grad(similarity)` to the logit of
            every negative (in-batch and hard; not a positive), i.e. weight each negative's exp-term
            by `exp(alpha * s)`, so harder negatives pull more. 0 = off (LLaVE's script uses 9).

    Several positives per query (`tgt_owner`, `train.multi_positive: all`): target row j belongs to
    query `tgt_owner[j]`. Every (query, positive) pair is one InfoNCE term whose softmax runs over that
    positive and the query's negatives (its other positives are left out: none is a negative for it);
    a query's terms are averaged, then the queries. With one positive per query this is plain InfoNCE.
    """

    def __init__(
        self,
        temperature: float = 0.02,
        gather: bool = True,
        mask_false_negatives: bool = False,
        symmetric: bool = False,
        hardness_alpha: float = 0.0,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.hardness_alpha = hardness_alpha
        self.temperature = temperature
        self.gather = gather
        self.mask_false_negatives = mask_false_negatives
        self.symmetric = symmetric
        #: (query, candidate) pairs dropped as false negatives by the last call, whole global batch
        self.masked = 0

    def __call__(
        self,
        qry_reps: torch.Tensor,
        tgt_reps: torch.Tensor,
        neg_reps: torch.Tensor | None = None,
        qry_keys: KeysLike | None = None,
        tgt_keys: KeysLike | None = None,
        neg_keys: KeysLike | None = None,
        tgt_owner: KeysLike | None = None,
    ) -> torch.Tensor:
        """Mean loss over the global batch (same value on every rank).

        Args:
            qry_reps, tgt_reps: [B, H] local reps; row i of each side is a positive pair. With
                `tgt_owner`, `tgt_reps` is [T, H]: target j is a positive of local query `tgt_owner[j]`.
            neg_reps: hard negatives, [B, k, H] or [B * k, H] (query i's negatives first). Every gathered
                hard negative is an extra target for *every* query, not only for its own query: N * k
                more logit columns per query, more negatives for free (their reps exist anyway).
            qry_keys, tgt_keys, neg_keys: content keys per row (LongTensor, ints, or hashables) for
                false-negative masking; see `content_keys`.
            tgt_owner: local query index of each target row (several positives per query); None: row i.
        """
        device = qry_reps.device
        gather = self.gather and world()[1] > 1
        gather_rep = gather_with_grad if gather else _identity
        gather_key = gather_no_grad if gather else _identity
        if tgt_owner is None and qry_reps.shape[0] != tgt_reps.shape[0]:
            raise ValueError(f"{qry_reps.shape[0]} queries but {tgt_reps.shape[0]} targets")

        with torch.autocast(device_type=device.type, enabled=False):
            q = gather_rep(qry_reps.float())
            t = gather_rep(tgt_reps.float())
            owner = _global_owner(tgt_owner, q, qry_reps.shape[0], gather)
            columns = [t]
            if neg_reps is not None:
                columns.append(gather_rep(neg_reps.reshape(-1, neg_reps.shape[-1]).float()))
            logits = q @ torch.cat(columns).T / self.temperature
            positive = torch.zeros_like(logits, dtype=torch.bool)
            positive[owner, torch.arange(t.shape[0], device=device)] = True
            if self.hardness_alpha:
                bonus = self.hardness_alpha * self.temperature * logits.detach()
                logits = logits + bonus.masked_fill(positive, 0.0)
            tk = None
            if self.mask_false_negatives:
                if tgt_keys is None:
                    raise ValueError("mask_false_negatives=True needs tgt_keys")
                tk = gather_key(as_keys(tgt_keys, device))
                cols = [tk]
                if neg_reps is not None:  # un-keyed hard negatives are never masked
                    nk = gather_key(as_keys(neg_keys, device)) if neg_keys is not None else None
                    cols.append(nk if nk is not None else _never(logits.shape[1] - tk.shape[0], device))
                masked = _per_query(tk[:, None] == torch.cat(cols)[None, :], owner, q.shape[0]) & ~positive
                logits = logits.masked_fill(masked, float("-inf"))
                self.masked = int(masked.sum())
            loss = _multi_positive_nll(logits, positive, owner)

            if self.symmetric:
                logits_t = t @ q.T / self.temperature
                if tk is not None:
                    # target j: query i is a false negative when one of its positives has j's content
                    # (the forward mask, transposed), or when it duplicates j's query (with qry_keys)
                    mask_t = _per_query(tk[:, None] == tk[None, :], owner, q.shape[0]).T
                    if qry_keys is not None:
                        qk = gather_key(as_keys(qry_keys, device))
                        mask_t |= qk[owner][:, None] == qk[None, :]
                    mask_t[torch.arange(t.shape[0], device=device), owner] = False
                    logits_t = logits_t.masked_fill(mask_t, float("-inf"))
                loss = (loss + _weighted_mean(F.cross_entropy(logits_t, owner, reduction="none"), owner)) / 2

        # Only the local shard carries gradient; DDP / DeepSpeed average over ranks: undo the average.
        return scale_grad(loss, world()[1]) if gather else loss


def _global_owner(
    tgt_owner: KeysLike | None, q: torch.Tensor, local_queries: int, gather: bool
) -> torch.Tensor:
    """The global query index of every gathered target row (`q`: the gathered queries)."""
    if tgt_owner is None:  # one positive per query: target i belongs to query i
        return torch.arange(q.shape[0], device=q.device)
    owner = as_keys(tgt_owner, q.device)
    if not gather:
        return owner
    counts = gather_no_grad(torch.tensor([local_queries], device=q.device))
    offset = int(counts[: world()[0]].sum())
    return gather_no_grad(owner + offset)


def _never(columns: int, device: torch.device) -> torch.Tensor:
    """Keys that match no target: un-keyed hard negatives are never masked."""
    return torch.full((columns,), -1, dtype=torch.long, device=device)


def _per_query(rows: torch.Tensor, owner: torch.Tensor, queries: int) -> torch.Tensor:
    """[T, C] per target row -> [N, C]: true where any positive of query i is true."""
    out = torch.zeros(queries, rows.shape[1], device=rows.device)
    return out.index_add_(0, owner, rows.float()) > 0


def _weighted_mean(losses: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Mean over queries of the mean over each query's positives (plain mean with one each)."""
    per_query = torch.bincount(owner).float()
    return (losses / per_query[owner]).sum() / (per_query > 0).sum()


def _multi_positive_nll(logits: torch.Tensor, positive: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """One InfoNCE term per (query, positive): the query's row of logits without its other positives."""
    rows = logits[owner]  # [T, C]: positive j's query
    columns = torch.arange(owner.shape[0], device=logits.device)
    others = positive[owner]
    others[columns, columns] = False
    return _weighted_mean(
        F.cross_entropy(rows.masked_fill(others, float("-inf")), columns, reduction="none"), owner
    )


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class MatryoshkaLoss:
    """Matryoshka representation learning (Kusupati et al. 2022): `loss` summed over the reps truncated
    to each of `dims` and re-normalised, so every prefix of the embedding is itself an embedding.

    List the full size among `dims` to keep the full-size term. Cost per dim: one more gather of the
    truncated reps and one more N x N logit matrix.
    """

    def __init__(self, loss: ContrastiveLoss, dims: Sequence[int], key: str | None = None) -> None:
        if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dims):
            raise ValueError(f"Matryoshka dims must be positive ints, got {list(dims)}")
        if len(set(dims)) != len(dims):
            raise ValueError(f"Matryoshka dims repeat: {list(dims)}")
        self.loss = loss
        self.dims = list(dims)
        self.key = key  # the config key the dims came from, named in errors

    @property
    def masked(self) -> int:
        """False negatives dropped by the last call (the same at every size)."""
        return self.loss.masked

    def __call__(
        self,
        qry_reps: torch.Tensor,
        tgt_reps: torch.Tensor,
        neg_reps: torch.Tensor | None = None,
        **keys: Any,
    ) -> torch.Tensor:
        total = qry_reps.new_zeros((), dtype=torch.float32)
        for d in self.dims:
            q, t = truncate_reps(qry_reps, d, self.key), truncate_reps(tgt_reps, d, self.key)
            neg = truncate_reps(neg_reps, d, self.key) if neg_reps is not None else None
            total = total + self.loss(q, t, neg, **keys)
        return total


def build_loss(cfg: Config) -> ContrastiveLoss | MatryoshkaLoss:
    """The training loss a config asks for: InfoNCE at `model.temperature` with the `train` options,
    summed over `train.matryoshka_dims` when they are set."""
    t = cfg.train
    loss = ContrastiveLoss(
        temperature=cfg.model.temperature,
        mask_false_negatives=t.mask_false_negatives,
        symmetric=t.symmetric_loss,
        hardness_alpha=t.hardness_alpha,
    )
    if t.matryoshka_dims:
        return MatryoshkaLoss(loss, t.matryoshka_dims, key="train.matryoshka_dims")
    return loss
