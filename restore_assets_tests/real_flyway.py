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
    with tarfile.open(archive) as tar:
        tar.extractall(building / "x", filter="data")  # no absolute paths, links out, devices
    archive.unlink()
    (top,) = (building / "x").iterdir()  # the archive holds one folder, flyway-<version>/
    shutil.rmtree(folder, ignore_errors=True)
    top.rename(folder)
    shutil.rmtree(building)
    if not launcher.is_file():
        raise OracleUnavailable(f"the Flyway {FLYWAY_VERSION} CLI archive has no flyway launcher")
    return launcher


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
