"""The pytest plugin seen from outside: pytest runs a user's project in a subprocess.

The project has no conftest: the installed package alone must give its tests DynamoDB Local,
tables and store options. Runs that need DynamoDB Local borrow the session's through
``DYNAMODB_ENDPOINT``, so no second JVM or container starts; runs that must start nothing put
a ``java`` and an ``npm`` on ``PATH`` that only record being called.
"""

from __future__ import annotations

import os
import stat
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from comic_vine_dynamodb_store.table import table_exists

pytest_plugins = ["pytester"]

REGION = "us-east-1"
HEADER = "comic-vine-dynamodb-store: DynamoDB Local via"
AWS_SOURCES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")

PYPROJECT = """
[tool.pytest.ini_options]
addopts = ["--strict-markers", "--strict-config"]
filterwarnings = ["error"]
"""

MYAPP = '''
"""A user's module: issue titles, fetched once and then served from a shared cache."""

from comic_vine_dynamodb_store import DynamoDBCacheStore


class IssueTitles:
    def __init__(self, fetch, **store_options):
        self.fetch = fetch
        self.cache = DynamoDBCacheStore(**store_options)

    def title(self, issue_id):
        key = f"issue:{issue_id}"
        title = self.cache.get(key)
        if title is None:
            title = self.fetch(issue_id)
            self.cache.set(key, title, ttl_seconds=3600)
        return title

    def close(self):
        self.cache.close()
'''

TEST_MYAPP = """
import os
from pathlib import Path

import pytest

from comic_vine_dynamodb_store import (
    DynamoDBAdaptiveRateLimitStore,
    DynamoDBCacheStore,
    DynamoDBDedupeStore,
    DynamoDBRateLimitStore,
)
from myapp import IssueTitles


def record(table_name):
    with Path(os.environ["TABLES_FILE"]).open("a") as tables:
        tables.write(table_name + "\\n")


@pytest.mark.dynamodb
def test_second_lookup_is_served_from_the_cache(store_options, store_table):
    record(store_table)
    assert store_options["table_name"] == store_table
    fetched = []

    def fetch(issue_id):
        fetched.append(issue_id)
        return f"Issue #{issue_id}"

    titles = IssueTitles(fetch, **store_options)
    try:
        assert titles.title(7) == "Issue #7"
        assert titles.title(7) == "Issue #7"
    finally:
        titles.close()
    assert fetched == [7]
    with DynamoDBCacheStore(**store_options) as other_process:
        assert other_process.get("issue:7") == "Issue #7"


def test_each_test_starts_from_an_empty_table(store_options):
    record(store_options["table_name"])
    with DynamoDBCacheStore(**store_options) as cache:
        assert cache.get("issue:7") is None


def test_the_options_fit_every_store(store_options):
    record(store_options["table_name"])
    with DynamoDBDedupeStore(**store_options) as dedupe:
        assert dedupe.run("job", lambda: 42) == 42
    with DynamoDBRateLimitStore(**store_options) as limiter:
        assert limiter.acquire("api")
    with DynamoDBAdaptiveRateLimitStore(**store_options) as adaptive:
        assert adaptive.acquire("api", "user")


def test_the_session_endpoint_and_credentials(dynamodb_local):
    assert dynamodb_local.kind == "env"
    assert dynamodb_local.endpoint == os.environ["DYNAMODB_ENDPOINT"]
    assert os.environ["AWS_ACCESS_KEY_ID"] == os.environ["EXPECTED_ACCESS_KEY"]


def test_a_plain_unit_test():
    assert sorted([3, 1, 2]) == [1, 2, 3]
"""


def plugin_args() -> tuple[str, ...]:
    """``-p`` for the plugin only when pytest would not load its entry point: loading it twice
    is an error, and the entry point is how users get it."""
    autoloads = not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") and any(
        point.value == "comic_vine_dynamodb_store.testing"
        for point in entry_points(group="pytest11")
    )
    return () if autoloads else ("-p", "comic_vine_dynamodb_store.testing")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*plugin_args(), *args, timeout=120)


def write_user_project(pytester: pytest.Pytester, tests: str) -> None:
    pytester.makefile(".toml", pyproject=PYPROJECT)
    pytester.makepyfile(myapp=MYAPP, test_myapp=tests)
    assert not list(pytester.path.rglob("conftest.py"))


@pytest.fixture
def recording_tools(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a ``java`` and an ``npm`` first on ``PATH`` that append their name to the returned
    file and fail: the jar provider cannot start anything, and any attempt leaves a trace."""
    bin_dir = pytester.mkdir("fake-bin")
    calls = pytester.path / "tool-calls.txt"
    for tool in ("java", "npm"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\necho {tool} >> "{calls}"\nexit 1\n', encoding="utf-8")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("DYNAMODB_ENDPOINT", raising=False)
    return calls


@pytest.mark.parametrize("credentials", ["none", "user"])
def test_a_user_project_passes_with_only_the_fixtures(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, endpoint: str, credentials: str
) -> None:
    """Each test gets its own table, deleted afterwards; credentials are dummies only if the
    user has none, and the report names the DynamoDB Local used."""
    write_user_project(pytester, TEST_MYAPP)
    tables_file = pytester.path / "tables.txt"
    monkeypatch.setenv("TABLES_FILE", str(tables_file))
    monkeypatch.setenv("DYNAMODB_ENDPOINT", endpoint)
    for name in AWS_SOURCES:
        monkeypatch.delenv(name, raising=False)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        monkeypatch.setenv(name, str(pytester.path / "no-such-file"))
    if credentials == "none":
        monkeypatch.setenv("EXPECTED_ACCESS_KEY", "local")
    else:
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "UserKey1")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "UserSecret1")
        monkeypatch.setenv("EXPECTED_ACCESS_KEY", "UserKey1")

    result = run(pytester)

    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            f"{HEADER} env at {endpoint} (DYNAMODB_ENDPOINT) [[]--dynamodb-provider=auto[]]",
            f"{HEADER} env at {endpoint} (DYNAMODB_ENDPOINT; started nothing)",
            "*5 passed*",
        ]
    )
    tables = tables_file.read_text(encoding="utf-8").split()
    monkeypatch.undo()  # this process's credentials back, to look the tables up
    assert len(tables) == 3
    assert len(set(tables)) == 3
    assert not [t for t in tables if table_exists(t, endpoint=endpoint, region=REGION)]


def test_tests_that_never_ask_for_it_start_nothing(
    pytester: pytest.Pytester, recording_tools: Path
) -> None:
    """With the jar chosen, unit tests run without Java or npm ever being called."""
    pytester.makepyfile(test_unit="def test_sum():\n    assert sum([1, 2]) == 3\n")

    result = run(pytester, "--dynamodb-provider=jar")

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"{HEADER} jar (Java), started on first use*"])
    result.stdout.no_fnmatch_line(f"{HEADER} jar at *")
    result.stdout.no_fnmatch_line("*did not start*")
    assert not recording_tools.exists()


def test_an_explicit_jar_ignores_dynamodb_endpoint(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    recording_tools: Path,
    endpoint: str,
) -> None:
    """The command line beats a variable left in the shell: the jar is tried, not the URL."""
    monkeypatch.setenv("DYNAMODB_ENDPOINT", endpoint)
    pytester.makepyfile(
        test_db="def test_db(dynamodb_local):\n    pass\n",
    )

    result = run(pytester, "--dynamodb-provider=jar")

    result.assert_outcomes(errors=1)
    assert recording_tools.read_text(encoding="utf-8").split()  # java or npm was called
    result.stdout.fnmatch_lines(
        ["*DynamoDB Local (jar) could not start*", "*DynamoDB Local did not start*"]
    )


def test_the_env_provider_without_an_endpoint_fails_clearly(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chosen in the ini file; every test that needs DynamoDB errors, naming the variable."""
    monkeypatch.delenv("DYNAMODB_ENDPOINT", raising=False)
    pytester.makeini("[pytest]\ndynamodb_local_provider = env\n")
    pytester.makepyfile(
        test_db=textwrap.dedent(
            """
            def test_table(store_table):
                pass

            def test_options(store_options):
                pass

            def test_unit():
                pass
            """
        )
    )

    result = run(pytester)

    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(
        [
            f"{HEADER} env but DYNAMODB_ENDPOINT is unset [[]--dynamodb-provider=env[]]",
            "*the env provider needs DYNAMODB_ENDPOINT set to the URL of a running DynamoDB*",
        ]
    )


@pytest.mark.parametrize(
    ("ini_image", "args", "image"),
    [
        (None, (), "env/dynamodb-local:1"),
        ("ini/dynamodb-local:2", (), "ini/dynamodb-local:2"),
        (
            "ini/dynamodb-local:2",
            ("--dynamodb-image=cli/dynamodb-local:3",),
            "cli/dynamodb-local:3",
        ),
    ],
)
def test_the_image_is_chosen_by_command_line_then_ini_then_environment(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    ini_image: str | None,
    args: tuple[str, ...],
    image: str,
) -> None:
    monkeypatch.setenv("DYNAMODB_LOCAL_IMAGE", "env/dynamodb-local:1")
    ini = "[pytest]\ndynamodb_local_provider = docker\n"
    if ini_image is not None:
        ini += f"dynamodb_local_image = {ini_image}\n"
    pytester.makeini(ini)
    pytester.makepyfile(test_unit="def test_unit():\n    pass\n")

    result = run(pytester, *args)

    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"{HEADER} testcontainers (image {image}), started on first use*"])


def test_an_unknown_provider_in_the_ini_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ndynamodb_local_provider = podman\n")
    pytester.makepyfile(test_unit="def test_unit():\n    pass\n")

    result = run(pytester)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*dynamodb_local_provider = 'podman': expected one of auto*"])
