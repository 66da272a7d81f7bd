"""Real Flyway as the oracle for the engine's differential tests.

Maven fetches flyway-core + flyway-database-postgresql + the PostgreSQL JDBC driver into ~/.m2
(once per machine; CI's `make test` does it on its first run), `javac` compiles the tiny driver
`flyway_oracle/FlywayOracle.java` into a cache folder outside the repository, and one JVM serves
the whole test session: a JSON request per line in, a JSON answer per line out.

`cli_launcher` fetches the real Flyway command line (`flyway-commandline` tar.gz, no bundled JRE:
it runs on the machine's Java 17) and extracts it into the same cache, for FLYWAY_RUNNER=cli.
"""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

FLYWAY_VERSION = "10.17.3"  # the runbook's flyway/flyway:10.17
PGJDBC_VERSION = "42.7.4"
ANSWER_WAIT_SECONDS = 300
DRIVER_SOURCE = Path(__file__).parent / "flyway_oracle" / "FlywayOracle.java"

POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>restore-assets</groupId><artifactId>flyway-oracle</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.flywaydb</groupId><artifactId>flyway-core</artifactId>
      <version>{FLYWAY_VERSION}</version></dependency>
    <dependency><groupId>org.flywaydb</groupId><artifactId>flyway-database-postgresql</artifactId>
      <version>{FLYWAY_VERSION}</version></dependency>
    <dependency><groupId>org.postgresql</groupId><artifactId>postgresql</artifactId>
      <version>{PGJDBC_VERSION}</version></dependency>
  </dependencies>
</project>
"""


class OracleUnavailable(RuntimeError):
    """Real Flyway could not be fetched or started; the message says why and what to do."""


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "restore_assets" / f"flyway-{FLYWAY_VERSION}"


def cli_dir() -> Path:
    return cache_dir().parent / f"flyway-cli-{FLYWAY_VERSION}"


def _run(argv: list[str], cwd: Path, what: str) -> None:
    if shutil.which(argv[0]) is None:
        raise OracleUnavailable(f"{argv[0]} is not on PATH: {what} needs it (Java 17 and Maven)")
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stdout + done.stderr).strip()[-2000:]
        raise OracleUnavailable(f"{what} failed ({' '.join(argv)}):\n{tail}")


def classpath() -> str:
    """Flyway's jars (resolved by Maven into ~/.m2) plus the compiled driver."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pom.xml").write_text(POM, encoding="utf-8")
    cp_file = folder / "classpath.txt"
    jars = cp_file.read_text().strip().split(os.pathsep) if cp_file.exists() else []
    if not jars or not all(Path(j).is_file() for j in jars):
        _run(
            ["mvn", "-q", "-B", "dependency:build-classpath", f"-Dmdep.outputFile={cp_file}"],
            folder,
            f"fetching Flyway {FLYWAY_VERSION} from Maven Central",
        )
        jars = cp_file.read_text().strip().split(os.pathsep)
    source = DRIVER_SOURCE.read_bytes()
    classes = folder / f"classes-{hashlib.sha256(source).hexdigest()[:12]}"
    if not (classes / "FlywayOracle.class").is_file():
        build = folder / "classes-building"
        shutil.rmtree(build, ignore_errors=True)
        _run(
            ["javac", "-cp", os.pathsep.join(jars), "-d", str(build), str(DRIVER_SOURCE)],
            folder,
            "compiling the Flyway driver",
        )
        shutil.rmtree(classes, ignore_errors=True)
        build.rename(classes)
    return os.pathsep.join([str(classes), *jars])


def cli_launcher() -> Path:
    """The `flyway` launcher script of the real Flyway CLI, fetched and extracted once."""
    folder = cli_dir()
    launcher = folder / "flyway"
    if launcher.is_file():
        return launcher
    # Maven copies the archive out of its local repository (wherever settings.xml puts it) into
    # a scratch folder beside the final one; renaming at the end means a half-extracted CLI is
    # never taken for a whole one.
    building = folder.with_name(folder.name + "-extracting")
    shutil.rmtree(building, ignore_errors=True)
    building.mkdir(parents=True)
    artifact = f"org.flywaydb:flyway-commandline:{FLYWAY_VERSION}:tar.gz"
    _run(
        ["mvn", "-q", "-B", "dependency:copy", f"-Dartifact={artifact}", "-DoutputDirectory=."],
        building,
        f"fetching the Flyway {FLYWAY_VERSION} command line from Maven Central",
    )
    archive = building / f"flyway-commandline-{FLYWAY_VERSION}.tar.gz"
    extract_data_only(archive, building / "x")
    archive.unlink()
    (top,) = (building / "x").iterdir()  # the archive holds one folder, flyway-<version>/
    shutil.rmtree(folder, ignore_errors=True)
    top.rename(folder)
    shutil.rmtree(building)
    if not launcher.is_file():
        raise OracleUnavailable(f"the Flyway {FLYWAY_VERSION} CLI archive has no flyway launcher")
    return launcher


class UnsafeMember(tarfile.TarError):
    """An archive member tarfile's "data" filter would refuse (the filter's own errors, on the
    Pythons that have it, are tarfile.TarError subclasses too)."""


def extract_data_only(archive: Path, dest: Path) -> None:
    """Extracts `archive` into `dest` under tarfile's "data" filter: no absolute paths, nothing
    outside `dest` (by `..` or through a link), no device or FIFO, no set-uid bits or foreign
    owners. The filter arrived in Python 3.11.4 (Debian 12's own Python is 3.11.2); before it,
    `checked_members` applies the same rules."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest, members=checked_members(tar, dest))


def checked_members(tar: tarfile.TarFile, dest: Path) -> Iterator[tarfile.TarInfo]:
    """The archive's members as tarfile.data_filter (CPython 3.12 `_get_filtered_attrs`) would
    pass them, for `extractall(members=...)` on a Python without extraction filters.

    A generator on purpose: `extractall` asks for the next member only after writing the one
    before, so each member is checked against the disk as it then is — a link an earlier
    member made counts, as it does for the filter (a check of all names up front would let
    `x -> .` then `x/y -> ../z` through). Members are tamed in place, so that tarfile's copy of a
    hard link's target out of the archive (when os.link fails) writes the tamed one too.
    """
    root = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return os.path.commonpath([os.path.realpath(path), root]) == root

    for member in tar:
        name = member.name.lstrip("/" + os.sep)  # as the filter does: `/a` lands as `a`
        if os.path.isabs(name):
            raise UnsafeMember(f"{member.name!r}: an absolute path")
        if not inside(os.path.join(root, name)):
            raise UnsafeMember(f"{member.name!r}: would be written outside {dest}")
        if not (member.isreg() or member.islnk() or member.isdir() or member.issym()):
            raise UnsafeMember(f"{member.name!r}: a device, FIFO or other special file")
        if member.islnk() or member.issym():
            if os.path.isabs(member.linkname):
                raise UnsafeMember(f"{member.name!r}: links to an absolute path")
            base = os.path.dirname(name) if member.issym() else ""
            target = os.path.join(root, base, member.linkname)
            if not inside(target):
                raise UnsafeMember(f"{member.name!r}: links outside {dest}")
            # tarfile copies a hard link's target out of the archive, attributes and all, when
            # the target is not on disk yet: only links to what was already written pass.
            if member.islnk() and not os.path.lexists(target):
                raise UnsafeMember(f"{member.name!r}: links to a file not extracted before it")
        member.name = name
        mode = member.mode & 0o755  # no set-uid/set-gid/sticky, no group/other write
        if member.isreg() or member.islnk():
            mode = (mode if mode & 0o100 else mode & ~0o111) | 0o600
        elif member.isdir():
            mode |= 0o700  # the filter leaves a folder's mode alone; never one we cannot fill
        member.mode = mode
        member.uid = member.gid = -1  # the filter ignores owners: chown(-1, -1) changes nothing
        member.uname = member.gname = ""
        yield member


class RealFlyway:
    """One JVM running real Flyway; `run` sends one command and returns Flyway's answer."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            ["java", "-cp", classpath(), "FlywayOracle"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # Flyway's own log; the answers say what happened
            text=True,
            encoding="utf-8",
        )

    def run(
        self,
        url: str,
        user: str,
        password: str,
        action: str,
        props: dict[str, str],
        with_info: bool = False,
    ) -> dict:
        request = dict(
            url=url, user=user, password=password, action=action, props=props, with_info=with_info
        )
        return self._ask(request)

    def _ask(self, request: dict) -> dict:
        assert self._process.stdin and self._process.stdout
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        # A safety net, not a timing: Flyway can wait forever (e.g. CREATE INDEX CONCURRENTLY
        # under its transactional lock), and a hung session would never report.
        ready, _, _ = select.select([self._process.stdout], [], [], ANSWER_WAIT_SECONDS)
        if not ready:
            self._process.kill()
            raise OracleUnavailable(
                f"real Flyway gave no answer in {ANSWER_WAIT_SECONDS} s to {request['action']}"
            )
        line = self._process.stdout.readline()
        if not line:
            raise OracleUnavailable("the Flyway JVM exited; run it by hand to see why")
        return json.loads(line)

    def read_conf(self, path: Path) -> dict[str, str]:
        """The settings Flyway's own reader (ConfigUtils.loadConfigurationFile) finds in `path`."""
        answer = self._ask({"action": "conf", "file": str(path)})
        assert answer["ok"], answer
        return answer["conf"]

    def close(self) -> None:
        if self._process.stdin:
            self._process.stdin.close()
        self._process.wait(timeout=30)
