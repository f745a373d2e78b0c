"""A linear-chain CRF: negative log-likelihood with the forward algorithm, Viterbi decoding, and the
forward-backward tables behind the confidences `llm-ner baseline predict` writes.

Vectorised over the batch; masks allow sentences of different lengths (padding on the right).
The gold-path score has no loop; the forward algorithm and Viterbi loop over time only, each step
one small batched product. Own code rather than `pytorch-crf` (unmaintained since 2019); checked
against brute-force enumeration, padded batches included, in the tests.
"""

from __future__ import annotations

import torch
from torch import nn


class CRF(nn.Module):
    """Transition, start and end scores over ``num_tags`` tags."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.start = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.end = nn.Parameter(torch.empty(num_tags).uniform_(-0.1, 0.1))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags).uniform_(-0.1, 0.1))

    def score(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Unnormalised score of the given tag paths; (batch,). Position 0 must be unmasked."""
        mask = mask.to(emissions.dtype)
        rows = torch.arange(emissions.shape[0], device=emissions.device)
        emitted = emissions.gather(2, tags.unsqueeze(2)).squeeze(2)  # (batch, length)
        moved = self.transitions[tags[:, :-1], tags[:, 1:]]  # (batch, length - 1)
        last = mask.long().sum(1) - 1
        return (
            self.start[tags[:, 0]] + (emitted * mask).sum(1) + (moved * mask[:, 1:]).sum(1) + self.end[tags[rows, last]]
        )

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z of every sentence with the forward algorithm; (batch,)."""
        # logsumexp over the previous tag as a matrix product of exponentials (shifted by the row
        # maximum so nothing overflows): one (batch, tags) x (tags, tags) product per step.
        exp_transitions = self.transitions.exp()
        alpha = self.start + emissions[:, 0]
        keep = mask.bool().unsqueeze(2)
        for t in range(1, emissions.shape[1]):
            top = alpha.max(dim=1, keepdim=True).values
            step = torch.log((alpha - top).exp() @ exp_transitions) + top + emissions[:, t]
            alpha = torch.where(keep[:, t], step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the gold tags."""
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).mean()

    @torch.no_grad()
    def forward_backward(self, emissions: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log forward and backward tables, each (batch, length, tags).

        ``alpha[b, t, j]``: log of the summed scores of every path over positions 0..t ending in tag j
        (emission at t included); ``beta[b, t, j]``: log of the summed scores of every continuation after
        position t from tag j (the end score included, the emission at t not). So ``alpha + beta`` at any
        unmasked position logsumexps to log Z, and a stretch of tags has the probability of
        `segment_log_probability`. Values at padded positions are meaningless."""
        length = emissions.shape[1]
        keep = mask.bool().unsqueeze(2)
        alphas = [self.start + emissions[:, 0]]
        for t in range(1, length):
            step = torch.logsumexp(alphas[-1].unsqueeze(2) + self.transitions, dim=1) + emissions[:, t]
            alphas.append(torch.where(keep[:, t], step, alphas[-1]))
        end = self.end.expand_as(emissions[:, 0])
        betas = [end]
        for t in range(length - 2, -1, -1):
            # beta_t(i) = logsumexp_j transition(i, j) + emission_{t+1}(j) + beta_{t+1}(j); the last
            # position of each sentence (t + 1 padded) keeps the end score.
            step = torch.logsumexp(self.transitions + (emissions[:, t + 1] + betas[-1]).unsqueeze(1), dim=2)
            betas.append(torch.where(keep[:, t + 1], step, end))
        return torch.stack(alphas, dim=1), torch.stack(betas[::-1], dim=1)

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The best tag path of every sentence (Viterbi), cut to its length."""
        batch, length, _ = emissions.shape
        score = self.start + emissions[:, 0]
        keep = mask.bool().unsqueeze(2)
        # Padding positions point to themselves so the backtrace passes through them unchanged.
        identity = torch.arange(self.num_tags, device=emissions.device).expand(batch, -1)
        history = []
        for t in range(1, length):
            best, index = (score.unsqueeze(2) + self.transitions).max(dim=1)
            score = torch.where(keep[:, t], best + emissions[:, t], score)
            history.append(torch.where(keep[:, t], index, identity))
        tag = (score + self.end).argmax(dim=1)
        path = [tag]
        for pointers in reversed(history):  # the backtrace, one gather per position for the whole batch
            tag = pointers.gather(1, tag.unsqueeze(1)).squeeze(1)
            path.append(tag)
        paths = torch.stack(path[::-1], dim=1).tolist()
        lengths = mask.long().sum(1).tolist()
        return [p[:n] for p, n in zip(paths, lengths)]


def segment_log_probability(
    alpha: torch.Tensor,
    beta: torch.Tensor,
    emissions: torch.Tensor,
    transitions: torch.Tensor,
    log_z: torch.Tensor,
    start: int,
    tags: list[int],
) -> torch.Tensor:
    """log P(y[start + k] = tags[k] for every k) of one sentence (its ``alpha``, ``beta``, ``emissions``:
    (length, tags), from `CRF.forward_backward`): every path through that stretch, summed."""
    score = alpha[start, tags[0]]
    for k in range(1, len(tags)):
        score = score + transitions[tags[k - 1], tags[k]] + emissions[start + k, tags[k]]
    return score + beta[start + len(tags) - 1, tags[-1]] - log_z
