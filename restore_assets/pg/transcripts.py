"""psql transcripts for the evidence: read-only commands run by the REAL psql in one session,
echoed (`-a`) before their output, so `psql_*.log` files are what psql printed, never typed.

Values reach psql only as psql variables (`-v name=value`, referenced as `:'name'` or `:"name"`),
which psql itself quotes: nothing from a dump or the database is formatted into psql input.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping

from restore_assets.errors import PsqlError
from restore_assets.pg.clients import client_binary
from restore_assets.pg.database import Database


def psql_transcript(
    db: Database,
    *commands: str,
    variables: Mapping[str, object] | None = None,
    note: str = "",
    echo: str = "all",
    check: bool = False,
) -> str:
    """What psql prints for `commands`, headed by the target (and a note, e.g. "before sync").

    `echo="all"` shows each input line (meta-commands too); `echo="queries"` shows each query
    as sent to the server, psql variables already filled in. `check`: commands that change
    something stop at the first error, which is raised (transcripts of reads never raise)."""
    psql = client_binary("psql", db.pg.tools.psql)
    args = [
        psql,
        "-X",
        "-v",
        f"ECHO={echo}",
        "-v",
        f"ON_ERROR_STOP={int(check)}",
        "--pset=pager=off",
    ]
    for name, value in (variables or {}).items():
        args += ["-v", f"{name}={value}"]
    result = subprocess.run(
        args,
        input="\n".join(commands) + "\n",
        env=db.client_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    header = f"-- {db.describe()}" + (f" ({note})" if note else "")
    transcript = f"{header}\n{result.stdout}{result.stderr}"
    if check and result.returncode != 0:
        raise PsqlError(f"psql stopped: {result.stderr.strip()}")
    return transcript
