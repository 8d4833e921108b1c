"""The error tree and the public surface of the package."""

from __future__ import annotations

import inspect

import pytest

import comic_vine_dynamodb_store as package
from comic_vine_dynamodb_store import config, errors
from comic_vine_dynamodb_store.errors import (
    CircuitBreakerOpenError,
    ConfigurationError,
    DynamoDBStoreError,
    InvalidKeyError,
    ItemTooLargeError,
    OperationTimeoutError,
    StoreUnavailableError,
    ThrottlingError,
)
from comic_vine_dynamodb_store.stores import (
    adaptive,
    cache,
    contracts,
    dedupe,
    memory_adaptive,
    memory_cache,
    memory_dedupe,
    memory_rate_limit,
    rate_limit,
)


def test_every_error_derives_from_the_root() -> None:
    for name in errors.__all__:
        assert issubclass(getattr(errors, name), DynamoDBStoreError), name


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (ConfigurationError, ValueError),
        (InvalidKeyError, ValueError),
        (ItemTooLargeError, ValueError),
        (OperationTimeoutError, TimeoutError),
    ],
)
def test_caller_errors_are_also_the_matching_builtin(
    error: type[Exception], builtin: type[Exception]
) -> None:
    assert issubclass(error, builtin)


@pytest.mark.parametrize("error", [ThrottlingError, OperationTimeoutError, CircuitBreakerOpenError])
def test_unavailability_errors_share_one_parent(error: type[Exception]) -> None:
    assert issubclass(error, StoreUnavailableError)


def test_errors_carry_operation_table_and_request_id() -> None:
    error = ThrottlingError("throttled", operation="PutItem", table="t", request_id="R1")
    assert (error.operation, error.table, error.request_id) == ("PutItem", "t", "R1")
    assert str(error) == "throttled (operation=PutItem, table=t, request_id=R1)"
    assert str(DynamoDBStoreError("plain")) == "plain"


def test_the_tree_is_drawn_in_the_module_docstring() -> None:
    doc = errors.__doc__ or ""
    for name in errors.__all__:
        assert name in doc, name


def _public_classes(module: object) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and not name.startswith("_")
        and value.__module__ == getattr(module, "__name__", None)
    }


def test_top_level_all_lists_every_public_error_and_option() -> None:
    exported = set(package.__all__)
    assert _public_classes(errors) <= exported
    assert _public_classes(config) - {"OptionsModel"} <= exported
    for module in (
        adaptive,
        contracts,
        cache,
        dedupe,
        memory_adaptive,
        memory_cache,
        memory_dedupe,
        memory_rate_limit,
        rate_limit,
    ):
        assert _public_classes(module) <= exported, module.__name__
    for name in package.__all__:
        assert hasattr(package, name), name
    assert sorted(package.__all__) == sorted(set(package.__all__))
