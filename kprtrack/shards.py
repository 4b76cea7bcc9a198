"""Data-set sharding: ``dataset.shard=I dataset.num_shards=N`` tracks one N-th of a data set's sequences.

The rule is sequence level and deterministic: the sequence at position ``k`` of the data set's order
(the order ``run`` tracks them in, which is sorted by path for every data set kprtrack ships:
PoseTrack annotation files, videos of a folder or glob, frame folders) belongs to shard ``k % N``.
Round robin rather than contiguous blocks: sequences that sit together in name order (a
recording session, one camera) are often alike in length, so blocks would give unequal shards.

The two keys are not constructor arguments of a data set: ``pipeline.build_stage`` drops them and
``pipeline._sources`` applies them, filtering a data set's ``files`` before any is opened (so another
shard's files are never read) or, for a data set without ``files``, the sequences as they come.
Each shard is its own run folder; ``python -m kprtrack merge`` (``kprtrack/merge.py``) puts the
shards back together and evaluates the union.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, TypeVar

from kprtrack.errors import InputError

KEYS = ("shard", "num_shards")  # under dataset.: taken out of the data set's config before it is built

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int  # 0-based
    count: int  # N >= 1

    def owns(self, position: int) -> bool:
        """Whether the sequence at ``position`` (0-based, in the data set's order) is this shard's."""
        return position % self.count == self.index

    def select(self, items: Sequence[T]) -> list[T]:
        return [item for position, item in enumerate(items) if self.owns(position)]

    def __str__(self) -> str:
        return f"dataset.shard={self.index} of dataset.num_shards={self.count}"


def _integer(value) -> int | None:
    """``value`` as an int when it is one (an integral float included), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def check(shard, num_shards) -> Shard | None:
    """The shard that ``dataset.shard`` / ``dataset.num_shards`` select, None for the whole data set
    (both null, or num_shards=1 without a shard), or one InputError line saying what is wrong."""
    count = None
    if num_shards is not None:
        count = _integer(num_shards)
        if count is None or count < 1:
            raise InputError(f"dataset.num_shards must be an integer >= 1, not {num_shards!r}")
    if shard is None:
        if count is None or count == 1:
            return None
        raise InputError(f"dataset.num_shards={count} needs dataset.shard=<0..{count - 1}> (one run per shard)")
    index = _integer(shard)
    if index is None:
        raise InputError(f"dataset.shard must be an integer (0-based), not {shard!r}")
    if count is None:
        raise InputError(f"dataset.shard={index} needs dataset.num_shards=<how many shards>")
    if not 0 <= index < count:
        raise InputError(f"dataset.shard={index} is out of range for dataset.num_shards={count} "
                         f"(shards are numbered 0..{count - 1})")
    return Shard(index, count)


def from_config(node) -> Shard | None:
    """The shard a ``dataset`` config node (DictConfig or dict) selects; see ``check``."""
    if node is None:
        return None
    return check(node.get("shard"), node.get("num_shards"))


def select(items: Sequence[T], shard, num_shards) -> list[T]:
    """The items (sequence names, files) of shard ``shard`` of ``num_shards``: those at positions
    ``k`` with ``k % num_shards == shard``, in order. Unsharded (both None): every item."""
    chosen = check(shard, num_shards)
    return list(items) if chosen is None else chosen.select(items)
