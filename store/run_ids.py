"""Which run ids the store may hold: a Bloom filter, so a new trace costs no store read.

Every export whose runs are not open in memory asks the store for them (a run shed, evicted or
stored before a restart goes on where it stopped: ``Pipeline._load_runs``). Nearly all of them are
new traces, and the read (a semi-join over every stored run) cost the daemon's process ~6 µs per
span on the bench's mix, growing with the store. A run id this filter has never been given is
certainly not stored, and is opened new without a read; one it has been given (or a false
positive, about 1 in 400) is read as before.

Sound only if every id the store holds was added: the ids stored when the daemon starts (read in
the background; until then every id counts as possibly stored), and every run the daemon opens,
added before its first commit. Ids are never removed (a run deleted by retention stays a
possible one: a read that finds nothing).

Scalable: a filter of layers, each twice the capacity of the one before, a new one when the last
is full, so the false-positive rate holds however many runs arrive (2 bytes per run).
"""

from __future__ import annotations

from collections.abc import Iterable

BITS_PER_ID = 16  # with 4 probes: ~0.24 % false positives per full layer
PROBES = 4
FIRST_CAPACITY = 65_536  # ids in the first layer (128 KiB)
_MASK64 = (1 << 64) - 1


class _Layer:
    __slots__ = ("bits", "capacity", "count", "size")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.size = capacity * BITS_PER_ID
        self.bits = bytearray(self.size // 8 + 1)
        self.count = 0

    def positions(self, key: int) -> list[int]:
        # Two halves of one 64-bit hash give the probes (Kirsch and Mitzenmacher's double hashing).
        low, high = key & 0xFFFFFFFF, (key >> 32) | 1
        return [(low + i * high) % self.size for i in range(PROBES)]

    def add(self, key: int) -> None:
        bits = self.bits
        for p in self.positions(key):
            bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def __contains__(self, key: int) -> bool:
        bits = self.bits
        return all(bits[p >> 3] & (1 << (p & 7)) for p in self.positions(key))


class RunIdFilter:
    """Run ids (canonical UUID strings) that may be stored. Not thread-safe: one thread adds."""

    def __init__(self, capacity: int = FIRST_CAPACITY) -> None:
        self._layers = [_Layer(max(1, capacity))]

    @staticmethod
    def _key(run_id: str) -> int:
        # Python's string hash: 64 bits, salted per process, which is fine for a filter that
        # lives in one process; computed once per string object.
        return hash(run_id) & _MASK64

    def add(self, run_id: str) -> None:
        last = self._layers[-1]
        if last.count >= last.capacity:
            last = _Layer(last.capacity * 2)
            self._layers.append(last)
        last.add(self._key(run_id))

    def add_all(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            self.add(run_id)

    def may_hold(self, run_id: str) -> bool:
        key = self._key(run_id)
        return any(key in layer for layer in self._layers)

    def absorb(self, other: RunIdFilter) -> None:
        """Also answer for every id ``other`` was given (its layers join these)."""
        self._layers[:0] = other._layers

    @property
    def bytes(self) -> int:
        return sum(len(layer.bits) for layer in self._layers)
