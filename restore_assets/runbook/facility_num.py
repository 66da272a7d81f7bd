"""Runbook §3.2 step 3: the Legacy `facility_num` sequence exists, `nextval` works, and it is past
every facility number already issued.

The runbook previews `nextval` and puts the value back with `setval` (a preview must not consume
a value); when facilities already exist beyond it, `ALTER SEQUENCE facility_num RESTART WITH
<max+1>`. The real psql does the preview, the put-back and the realignment, so
`psql_nextval_facility_num_legacy.log` and `psql_setval_facility_num_legacy.log` are its own
transcripts; psycopg reads the state before and after to judge it.
"""

from __future__ import annotations

from dataclasses import dataclass

from restore_assets.pg.database import Database
from restore_assets.pg.transcripts import psql_transcript
from restore_assets.runbook.checks import Check
from restore_assets.runbook.evidence import EvidenceStore
from restore_assets.runbook.preflight import reading_lock

FACILITY_PREFIX = "1.3.6.1.4.1.9414.72."
STATE_SQL = "SELECT last_value, is_called FROM facility_num;"
INCREMENT_SQL = (
    "SELECT increment_by FROM pg_sequences WHERE sequencename = 'facility_num' "
    "AND schemaname = ANY (current_schemas(false))"
)
FACILITY_NUMBER = r"(regexp_match(facilityid, '^1\.3\.6\.1\.4\.1\.9414\.72\.(\d+)$'))[1]::bigint"
MAX_FACILITY_SQL = f"SELECT max({FACILITY_NUMBER}) FROM d_facility"
PREVIEW = (STATE_SQL, "SELECT nextval('facility_num');")
# :last_value/:is_called are our own typed int and bool (read just before), not text from data.
PUT_BACK = ("SELECT setval('facility_num', :last_value, :is_called);", STATE_SQL)
REALIGN = (
    # The runbook's statement; its value computed by the server inside psql (\gset).
    f"SELECT max({FACILITY_NUMBER}) + 1 AS restart_with FROM d_facility \\gset",
    "ALTER SEQUENCE facility_num RESTART WITH :restart_with;",
    STATE_SQL,
)


@dataclass(frozen=True)
class FacilityNum:
    exists: bool
    before: tuple[int, bool] | None = None
    preview_nextval: int | None = None
    put_back: bool = False
    max_facility_number: int | None = None
    realigned_to: int | None = None
    after: tuple[int, bool] | None = None
    next_value: int | None = None

    @property
    def behind(self) -> bool:
        """The next value would collide with a facility number already issued."""
        highest = self.max_facility_number
        return highest is not None and self.next_value is not None and self.next_value <= highest

    @property
    def next_facility_id(self) -> str:
        return f"{FACILITY_PREFIX}{self.next_value}"

    def check(self, check_id: str) -> Check:
        """The one verdict the asset check and the db_restore gate both report."""
        if not self.exists:
            return Check(check_id, False, "sequence facility_num does not exist on Legacy")
        if not self.put_back:
            return Check(check_id, False, f"the preview was not put back: {self.after}")
        if self.behind:
            return Check(
                check_id,
                False,
                f"facility_num would give {self.next_value}, but facility number "
                f"{self.max_facility_number} already exists; materialise legacy/facility_num to "
                "realign it",
            )
        if self.realigned_to is not None:
            detail = (
                f"realigned: highest facility number {self.max_facility_number} was not below "
                f"nextval {self.preview_nextval}; RESTART WITH {self.realigned_to}"
            )
        else:
            detail = (
                f"nextval previewed {self.preview_nextval} and put back; next id "
                f"{self.next_facility_id}"
            )
        return Check(check_id, True, detail, {"preview_nextval": self.preview_nextval})

    def summary(self) -> dict[str, object]:
        return {
            "last_value before": self.before[0] if self.before else None,
            "preview nextval": self.preview_nextval,
            "put back": self.put_back,
            "highest facility number": self.max_facility_number,
            "realigned to": self.realigned_to,
            "next facility id": self.next_facility_id if self.exists else None,
        }


def _state(conn) -> tuple[int, bool]:
    last_value, is_called = conn.execute(STATE_SQL).fetchone()
    return int(last_value), bool(is_called)


def preview_facility_num(
    db: Database, evidence: EvidenceStore, realign: bool = True
) -> FacilityNum:
    """Preview nextval, put it back exactly, and (with `realign`; the gate only looks)
    move the sequence past the highest facility number. The gate's look is appended to the
    transcripts, so §3.2 step 3's own (a realignment included) stays readable."""
    with reading_lock(db):
        save = evidence.write if realign else evidence.append
        with db.connect(autocommit=True) as conn:
            if conn.execute("SELECT to_regclass('facility_num')").fetchone()[0] is None:
                return FacilityNum(exists=False)
            before = _state(conn)
            increment = conn.execute(INCREMENT_SQL).fetchone()[0]
            highest = conn.execute(MAX_FACILITY_SQL).fetchone()[0]
            try:
                note = "" if realign else "gates/report re-check"
                save(
                    "psql_nextval_facility_num_legacy.log",
                    psql_transcript(db, *PREVIEW, note=note, echo="queries", check=True),
                )
                preview = _state(conn)[0]  # nextval leaves last_value at the value it returned
            finally:
                # Put it back exactly: the runbook's log shows setval(..., 103) after the preview.
                variables = {"last_value": before[0], "is_called": "true" if before[1] else "false"}
                transcript = psql_transcript(
                    db, *PUT_BACK, variables=variables, note=note, echo="queries", check=True
                )
            restored = _state(conn)
            realigned = realign and highest is not None and highest >= preview
            if realigned:
                note = f"highest facility number {highest} >= next value {preview}: realign"
                transcript += psql_transcript(db, *REALIGN, note=note, echo="queries", check=True)
            save("psql_setval_facility_num_legacy.log", transcript)
            after = _state(conn)
        return FacilityNum(
            exists=True,
            before=before,
            preview_nextval=preview,
            put_back=restored == before,
            max_facility_number=highest,
            realigned_to=highest + 1 if realigned else None,
            after=after,
            next_value=after[0] + (increment if after[1] else 0),
        )
