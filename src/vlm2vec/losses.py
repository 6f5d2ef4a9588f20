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


def _same_key_mask(row_keys: torch.Tensor, col_keys: torch.Tensor) -> torch.Tensor:
    """[R, C] True where column j has row i's key, except the true pair (i, i)."""
    mask = row_keys[:, None] == col_keys[None, :]
    diag = torch.arange(row_keys.shape[0], device=mask.device)
    mask[diag, diag] = False
    return mask


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
            content key equals the key of i's own positive, except the positive itself. Needs
            `tgt_keys` (and `neg_keys` to mask hard negatives; `qry_keys` to also mask duplicate queries in
            the symmetric term). Cost:
            an N x (N + M) boolean mask and the int64 key gather.
        symmetric: add the target -> query InfoNCE term (targets pick their query among all queries)
            and average the two. With masking, target j's softmax drops every other query whose
            positive has j's content key (as in the forward term) and, given `qry_keys`, every
            duplicate of query j. Cost: a second N x N logit matrix.
        hardness_alpha: hardness weighting (LLaVE): add `alpha * stop_grad(similarity)` to the logit of
            every negative (in-batch and hard; not the positive), i.e. weight each negative's exp-term
            by `exp(alpha * s)`, so harder negatives pull more. 0 = off (LLaVE's script uses 9).
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

    def __call__(
        self,
        qry_reps: torch.Tensor,
        tgt_reps: torch.Tensor,
        neg_reps: torch.Tensor | None = None,
        qry_keys: KeysLike | None = None,
        tgt_keys: KeysLike | None = None,
        neg_keys: KeysLike | None = None,
    ) -> torch.Tensor:
        """Mean loss over the global batch (same value on every rank).

        Args:
            qry_reps, tgt_reps: [B, H] local reps; row i of each side is a positive pair.
            neg_reps: hard negatives, [B, k, H] or [B * k, H] (query i's negatives first). Every gathered
                hard negative is an extra target for *every* query, not only for its own query: N * k
                more logit columns per query, more negatives for free (their reps exist anyway).
            qry_keys, tgt_keys, neg_keys: content keys per row (LongTensor, ints, or hashables) for
                false-negative masking; see `content_keys`.
        """
        if qry_reps.shape[0] != tgt_reps.shape[0]:
            raise ValueError(f"{qry_reps.shape[0]} queries but {tgt_reps.shape[0]} targets")
        device = qry_reps.device
        gather = self.gather and world()[1] > 1
        gather_rep = gather_with_grad if gather else _identity
        gather_key = gather_no_grad if gather else _identity

        with torch.autocast(device_type=device.type, enabled=False):
            q = gather_rep(qry_reps.float())
            t = gather_rep(tgt_reps.float())
            columns = [t]
            if neg_reps is not None:
                columns.append(gather_rep(neg_reps.reshape(-1, neg_reps.shape[-1]).float()))
            logits = q @ torch.cat(columns).T / self.temperature
            labels = torch.arange(q.shape[0], device=device)
            if self.hardness_alpha:
                logits = _hardness_weighted(logits, labels, self.hardness_alpha * self.temperature)

            if self.mask_false_negatives:
                if tgt_keys is None:
                    raise ValueError("mask_false_negatives=True needs tgt_keys")
                tk = gather_key(as_keys(tgt_keys, device))
                masks = [_same_key_mask(tk, tk)]
                if neg_reps is not None:
                    n_neg = logits.shape[1] - tk.shape[0]
                    if neg_keys is None:  # un-keyed hard negatives are never masked
                        masks.append(torch.zeros(tk.shape[0], n_neg, dtype=torch.bool, device=device))
                    else:
                        nk = gather_key(as_keys(neg_keys, device))
                        masks.append(tk[:, None] == nk[None, :])
                logits = logits.masked_fill(torch.cat(masks, dim=1), float("-inf"))
            loss = F.cross_entropy(logits, labels)

            if self.symmetric:
                logits_t = t @ q.T / self.temperature
                if self.mask_false_negatives:
                    # target j: query i is a false negative when its positive is j's content (the
                    # forward mask, transposed), or when it duplicates query j (with qry_keys)
                    mask_t = _same_key_mask(tk, tk)
                    if qry_keys is not None:
                        qk = gather_key(as_keys(qry_keys, device))
                        mask_t |= _same_key_mask(qk, qk)
                    logits_t = logits_t.masked_fill(mask_t, float("-inf"))
                loss = (loss + F.cross_entropy(logits_t, labels)) / 2

        # Only the local shard carries gradient; DDP / DeepSpeed average over ranks: undo the average.
        return scale_grad(loss, world()[1]) if gather else loss


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _hardness_weighted(logits: torch.Tensor, labels: torch.Tensor, scale: float) -> torch.Tensor:
    """`logits + scale * stop_grad(logits)` off the positive column; with `scale = alpha * temperature`
    this adds `alpha * stop_grad(similarity)` to each negative's logit (LLaVE's hardness weighting)."""
    bonus = scale * logits.detach()
    bonus[torch.arange(logits.shape[0], device=logits.device), labels] = 0
    return logits + bonus


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
