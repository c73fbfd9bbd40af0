"""Counters the engine keeps for ``/metrics``: plain numbers, no exporter dependency here."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass
class EngineStats:
    """Monotonic counters plus the current queue depth.

    ``batch_sizes`` counts batches by the smallest bucket bound that holds their size (the
    last slot is "larger than every bound"), ready for a Prometheus histogram.
    """

    batches: int = 0
    batch_items: int = 0
    batch_sizes: list[int] = field(default_factory=lambda: [0] * (len(BATCH_SIZE_BUCKETS) + 1))
    signed: Counter[tuple[int, str]] = field(default_factory=Counter)
    signed_inline: int = 0
    failed: int = 0
    worker_restarts: int = 0
    rejected_overloaded: int = 0
    queue_depth: int = 0

    def record_batch(self, size: int) -> None:
        self.batches += 1
        self.batch_items += size
        for index, bound in enumerate(BATCH_SIZE_BUCKETS):
            if size <= bound:
                self.batch_sizes[index] += 1
                return
        self.batch_sizes[-1] += 1

    def signed_total(self, algorithm: str | None = None) -> int:
        return sum(n for (_, algo), n in self.signed.items() if algorithm in (None, algo))
