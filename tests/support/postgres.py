"""A throwaway PostgreSQL cluster: initdb into a temp directory, Unix socket only, stopped afterwards.

PostgreSQL refuses to run as root, so as root the cluster belongs to the
``postgres`` user (Debian's package creates it) and its commands run through
``runuser``; as anyone else, it simply runs as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    pass


def find_bin_dir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)"
        )
    return candidates[-1].parent


@dataclass
class PostgresCluster:
    root: Path
    bin_dir: Path
    run_as: str | None

    @property
    def socket_dir(self) -> Path:
        return self.root

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    @classmethod
    def start(cls) -> PostgresCluster:
        bin_dir = find_bin_dir()
        run_as = None
        root = Path(tempfile.mkdtemp(prefix="cx-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable("running as root but there is no 'postgres' user") from exc
            os.chown(root, owner.pw_uid, owner.pw_gid)
            run_as = "postgres"
        cluster = cls(root=root, bin_dir=bin_dir, run_as=run_as)
        data = root / "data"
        try:
            cluster._run(str(bin_dir / "initdb"), "-D", str(data), "-E", "UTF8", "--locale=C.UTF-8",
                         "-U", "postgres", "--auth=trust", "--no-sync")  # fmt: skip
            options = (
                f"-k {root} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=200"
            )
            cluster._run(
                str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"
            )
        except subprocess.CalledProcessError as exc:
            shutil.rmtree(root, ignore_errors=True)
            raise PostgresUnavailable(f"could not start PostgreSQL: {exc.stderr or exc.stdout}") from exc
        return cluster

    def stop(self) -> None:
        try:
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def drop_database(self, name: str) -> None:
        """Drop a database a test is done with; connections it left open are ended (FORCE), not waited for."""
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(str(self.bin_dir / "psql"), "-h", str(self.socket_dir), "-U", "postgres", "-d", database,
                         "-v", "ON_ERROR_STOP=1", "-At", "-c", sql).stdout  # fmt: skip
