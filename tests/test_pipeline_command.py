"""``manage.py pipeline rebuild``: a bad date or an empty range is a one-line error."""

import pytest

from .conftest import run_manage

pytestmark = pytest.mark.django_db

EXPECTED = (
    "expected YYYY-MM-DD or an ISO 8601 datetime such as 2024-01-01T00:00:00Z (UTC if no offset)"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--from", "yesterday", "--to", "2024-02-01"),
         f"CommandError: --from 'yesterday' is not a date: {EXPECTED}"),
        (("--from", "2024-01-01", "--to", "2024-13-01"),
         f"CommandError: --to '2024-13-01' is not a date: {EXPECTED}"),
        (("--from", "2024-02-01", "--to", "2024-01-01"),
         "CommandError: --from (2024-02-01 00:00) must be before --to (2024-01-01 00:00)"),
        (("--from", "2024-01-01T00:00:00Z", "--to", "2024-01-01"),
         "CommandError: --from (2024-01-01 00:00) must be before --to (2024-01-01 00:00)"),
    ],
)  # fmt: skip
def test_rebuild_refuses_bad_dates_in_one_line(args, message, test_database_env):
    result = run_manage("pipeline", "rebuild", *args, env=test_database_env, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [message]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
