"""The one pipeline every DynamoDB call goes through: timeout, retries, breaker, errors.

Also the bulk-work helpers: :func:`execute_in_parallel` (bounded concurrency),
:class:`BatchWriter` (batches that finish), :class:`AdaptiveDelayCalculator` (pacing under
throttling) and :func:`calculate_optimal_batch_size`.
"""

from comic_vine_dynamodb_store.errors import ParallelExecutionError, UnprocessedItemsError
from comic_vine_dynamodb_store.resilience.batching import (
    MAX_BATCH_ITEMS,
    MAX_BATCH_REQUEST_BYTES,
    BatchWriter,
    calculate_optimal_batch_size,
)
from comic_vine_dynamodb_store.resilience.delay import AdaptiveDelayCalculator
from comic_vine_dynamodb_store.resilience.parallel import (
    execute_in_parallel,
    execute_in_parallel_async,
)

__all__ = [
    "MAX_BATCH_ITEMS",
    "MAX_BATCH_REQUEST_BYTES",
    "AdaptiveDelayCalculator",
    "BatchWriter",
    "ParallelExecutionError",
    "UnprocessedItemsError",
    "calculate_optimal_batch_size",
    "execute_in_parallel",
    "execute_in_parallel_async",
]
