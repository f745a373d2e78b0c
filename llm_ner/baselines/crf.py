"""A linear-chain CRF: negative log-likelihood with the forward algorithm, Viterbi decoding.

Vectorised over the batch; masks allow sentences of different lengths (padding on the right).
Own code rather than `pytorch-crf` (unmaintained since 2019); checked against brute-force
enumeration in the tests.
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
        """Unnormalised score of the given tag paths; (batch,)."""
        batch, length, _ = emissions.shape
        mask = mask.to(emissions.dtype)
        rows = torch.arange(batch, device=emissions.device)
        score = self.start[tags[:, 0]] + emissions[rows, 0, tags[:, 0]]
        for t in range(1, length):
            step = self.transitions[tags[:, t - 1], tags[:, t]] + emissions[rows, t, tags[:, t]]
            score = score + step * mask[:, t]
        last = mask.long().sum(1) - 1
        return score + self.end[tags[rows, last]]

    def log_partition(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """log Z of every sentence with the forward algorithm; (batch,)."""
        alpha = self.start + emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha.unsqueeze(2) + self.transitions + emissions[:, t].unsqueeze(1), dim=1)
            alpha = torch.where(mask[:, t].unsqueeze(1).bool(), step, alpha)
        return torch.logsumexp(alpha + self.end, dim=1)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of the gold tags."""
        return (self.log_partition(emissions, mask) - self.score(emissions, tags, mask)).mean()

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        """The best tag path of every sentence (Viterbi), cut to its length."""
        batch, length, _ = emissions.shape
        score = self.start + emissions[:, 0]
        history = []
        for t in range(1, length):
            candidates = score.unsqueeze(2) + self.transitions
            best, index = candidates.max(dim=1)
            step = best + emissions[:, t]
            keep = mask[:, t].unsqueeze(1).bool()
            score = torch.where(keep, step, score)
            # Padding positions point to themselves so the backtrace passes through unchanged.
            identity = torch.arange(self.num_tags, device=emissions.device).expand(batch, -1)
            history.append(torch.where(keep, index, identity))
        score = score + self.end
        lengths = mask.long().sum(1).tolist()
        paths = []
        for row in range(batch):
            tag = int(score[row].argmax())
            path = [tag]
            for t in range(length - 2, -1, -1):
                tag = int(history[t][row, tag])
                path.append(tag)
            path.reverse()
            paths.append(path[: lengths[row]])
        return paths
