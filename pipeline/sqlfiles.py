"""SQL kept as files under ``sql/``, applied by migrations.

A schema file ``sql/schema/NNNN_name.sql`` comes with its reverse
``NNNN_name.down.sql``; a migration applies the pair with :func:`run_sql_file`.
Schema files are never edited after they have landed: a change is a new
numbered pair and a new migration.
"""

from pathlib import Path

from django.db import migrations

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def read_sql(relative_path: str) -> str:
    return (SQL_DIR / relative_path).read_text(encoding="utf-8")


def run_sql_file(forward: str, reverse: str) -> migrations.RunSQL:
    """A RunSQL operation for ``sql/<forward>`` with ``sql/<reverse>`` as its reverse."""
    return migrations.RunSQL(sql=read_sql(forward), reverse_sql=read_sql(reverse))
