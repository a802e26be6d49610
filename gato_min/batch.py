"""`Batch`: a batch of token sequences as the model reads it, and the cuts made of it.

Built only by `gato_min.sequence.build_batch` (the one road from timesteps to tokens); acting
feeds pieces of one (`Batch.window`) and training concatenates the batches of its tasks
(`concat_batches`; tasks with windows of different lengths go in one batch per length,
`batches_by_length`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_PER_TOKEN = ("token_ids", "token_kinds", "local_positions", "loss_mask", "attention_mask")  # Batch's (B, L) fields


@dataclass
class Batch:
    token_ids: torch.Tensor  # (B, L) int64
    token_kinds: torch.Tensor  # (B, L) int64, one of KIND_NAMES' indices
    local_positions: torch.Tensor  # (B, L) int64, -1 = no local position
    loss_mask: torch.Tensor  # (B, L) bool: text and logged action tokens
    attention_mask: torch.Tensor  # (B, L) bool: real tokens (False = padding)
    patches: torch.Tensor  # (N, C, P, P) uint8 pixels of every image token of the batch
    patch_index: torch.Tensor  # (N,) int64: flat position b * L + l of each patch
    patch_row_ranges: torch.Tensor  # (N, 2) int64: quantized [from, to) row range
    patch_col_ranges: torch.Tensor  # (N, 2) int64
    prompted: torch.Tensor  # (B,) bool: the sequence starts with a prompt
    prompt_from_end: torch.Tensor  # (B,) bool: that prompt is an episode's end (else uniform)

    def to(self, device) -> Batch:
        return Batch(**{k: v.to(device) for k, v in self.__dict__.items()})

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.token_ids.shape)

    @property
    def counted_tokens(self) -> int:
        """How many tokens the loss counts: predicted (not the first), real and in the loss mask."""
        return int((self.loss_mask[:, 1:] & self.attention_mask[:, 1:]).sum())

    def window(self, start: int, stop: int) -> Batch:
        """Tokens [start, stop) of every sequence, with the image patches that fall inside."""
        length = self.token_ids.shape[1]
        if not 0 <= start < stop <= length:
            raise ValueError(f"window [{start}, {stop}) does not fit sequences of {length} tokens")
        per_token = {name: getattr(self, name)[:, start:stop] for name in _PER_TOKEN}
        fields = {name: value for name, value in self.__dict__.items() if name not in per_token} | per_token
        if len(self.patch_index):  # (none in most acting calls: nothing to select)
            row, column = self.patch_index // length, self.patch_index % length
            inside = (column >= start) & (column < stop)
            fields.update(
                patches=self.patches[inside],
                patch_index=row[inside] * (stop - start) + column[inside] - start,
                patch_row_ranges=self.patch_row_ranges[inside],
                patch_col_ranges=self.patch_col_ranges[inside],
            )
        return Batch(**fields)


def concat_batches(batches: list[Batch]) -> Batch:
    """One batch holding the sequences of `batches` (all of the same length) one after another."""
    if not batches:
        raise ValueError("no batches to concatenate")
    lengths = {b.token_ids.shape[1] for b in batches}
    if len(lengths) != 1:
        raise ValueError(f"batches of different sequence lengths {sorted(lengths)} cannot be concatenated")
    if len(batches) == 1:
        return batches[0]
    length = lengths.pop()
    offsets = torch.cumsum(torch.tensor([0] + [b.token_ids.shape[0] for b in batches[:-1]]), 0) * length
    fields = {k: torch.cat([getattr(b, k) for b in batches]) for k in batches[0].__dict__ if k != "patch_index"}
    fields["patch_index"] = torch.cat([b.patch_index + offset for b, offset in zip(batches, offsets.tolist())])
    return Batch(**fields)


def batches_by_length(batches: list[Batch]) -> list[Batch]:
    """`batches` concatenated into one batch per sequence length, in the order the lengths first
    appear (a single length: the one batch `concat_batches` gives)."""
    groups: dict[int, list[Batch]] = {}
    for batch in batches:
        groups.setdefault(batch.token_ids.shape[1], []).append(batch)
    return [concat_batches(group) for group in groups.values()]
