"""The ``dubbok`` command line against a real etcd: output, exit codes, CAS, history."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dubbok.cli import main
from dubbok.config import ConfigStore
from dubbok.registry import ConsumerInfo
from dubbok.registry.record import consumer_key, encode_consumer
from dubbok.testing.etcd import EtcdServer

pytestmark = pytest.mark.etcd

_namespaces = itertools.count()
KEY = "services/helloworld.Greeter/governance"


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture
def url(etcd: EtcdServer, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"{etcd.url}/?namespace=cli{next(_namespaces)}"
    monkeypatch.setenv("DUBBOK_REGISTRY", url)
    monkeypatch.setenv("DUBBOK_AUTHOR", "tester")
    return url


@pytest.fixture
def store(url: str) -> Iterator[ConfigStore]:
    with ConfigStore.from_url(url) as opened:
        yield opened


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(args))
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "--json")
        assert code == 0, err
        return json.loads(out)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], url: str) -> Run:
    """Runs the command line in this process, with DUBBOK_REGISTRY set to ``url``."""
    return Run(capsys)


def test_set_get_history_diff_rollback(run: Run, url: str) -> None:
    first = run.json("config", "set", KEY, "timeout: 1\n", "-m", "first")
    assert first["previous_revision"] == 0 and first["changed"]
    second = run.json(
        "config", "set", KEY, "timeout: 2\n", "--expect-revision", str(first["revision"])
    )
    got = run.json("config", "get", KEY)
    assert got == {"key": KEY, "revision": second["revision"], "value": "timeout: 2\n",
                   "data": {"timeout": 2}}  # fmt: skip
    code, out, _ = run("config", "get", KEY)
    assert (code, out) == (0, "timeout: 2\n")

    history = run.json("config", "history", KEY)
    assert [(h["revision"], h["author"], h["message"], h["current"]) for h in history] == [
        (second["revision"], "tester", "", True),
        (first["revision"], "tester", "first", False),
    ]
    code, out, _ = run("config", "history", KEY)
    assert code == 0 and "tester" in out and "first" in out

    diff = run.json("config", "diff", KEY)
    assert "-timeout: 1" in diff["diff"] and "+timeout: 2" in diff["diff"]

    rolled = run.json("config", "rollback", KEY, "-m", "back")
    assert rolled["previous_revision"] == second["revision"]
    assert run.json("config", "get", KEY)["value"] == "timeout: 1\n"
    listed = run.json("config", "ls")
    assert listed == [
        {"key": KEY, "revision": rolled["revision"], "kind": "governance", "scope": "services"}
    ]


def test_invalid_documents_are_refused_with_every_path(run: Run, store: ConfigStore) -> None:
    code, _, err = run("config", "set", KEY, "timeout: -1\nmethods: {SayHello: {retrys: 1}}")
    assert code == 1
    assert "timeout: must be greater than 0" in err
    assert "methods.SayHello.retrys: unknown field; did you mean 'retries'?" in err
    assert "Nothing was written" in err
    assert store.get(KEY) is None
    code, _, err = run("config", "set", KEY, "timeout: 0", "--json")
    assert code == 1
    assert json.loads(err)["problems"] == [
        {"path": "timeout", "message": "must be greater than 0 (got 0)"}
    ]


def test_a_stale_revision_is_a_conflict(run: Run) -> None:
    first = run.json("config", "set", KEY, "timeout: 1")
    run.json("config", "set", KEY, "timeout: 2")
    code, _, err = run(
        "config", "set", KEY, "timeout: 3", "--expect-revision", str(first["revision"])
    )
    assert code == 3
    assert "changed by someone else" in err and "--expect-revision" in err


def test_exit_codes_for_usage_and_an_unreachable_etcd(
    run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run("config", "get", "nowhere/x")[0] == 1
    assert run("config", "get", "apps/shop/missing")[0] == 1
    assert run("config", "frobnicate")[0] == 1
    assert run("degrade", "a.B", "M")[0] == 1  # no --force/--fail/--off
    code, _, err = run("config", "get", KEY, "--registry", "etcd://127.0.0.1:1", "--timeout", "1")
    assert code == 2
    assert "127.0.0.1:1" in err and "DUBBOK_REGISTRY" in err
    monkeypatch.delenv("DUBBOK_REGISTRY")
    code, _, err = run("config", "get", KEY)
    assert code == 1 and "no registry given" in err


def test_dry_run_shows_the_change_and_who_follows_it(
    run: Run, etcd: EtcdServer, store: ConfigStore
) -> None:
    store.put(KEY, "timeout: 1\n")
    consumers = [ConsumerInfo(app="web", host="h", pid=pid) for pid in range(1, 21)]
    for info in consumers:
        key = consumer_key(store.namespace, "helloworld.Greeter", info)
        etcd.put(key, encode_consumer(info, started_at=0))
    doc = "timeout: 2\ngray:\n  - {name: half, select: {percent: 50}, rules: {timeout: 3}}\n"
    code, out, err = run("config", "set", KEY, doc, "--dry-run")
    assert code == 0, err
    assert "-timeout: 1" in out and "+timeout: 2" in out
    assert "20 registered process(es) follow" in out and "web@h:7" in out
    assert "gray 'half' selects" in out and "of 20 consumer(s)" in out
    assert "nothing was written" in err
    entry = store.get(KEY)
    assert entry is not None and entry.text == "timeout: 1\n"
    preview = run.json("config", "rm", KEY, "--dry-run")
    assert preview["dry_run"] and len(preview["watchers"]) == 20


def test_values_from_files_and_stdin_and_unicode_keys(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("retries: 0\n")
    run.json("config", "set", KEY, "-f", str(path))
    assert run.json("config", "get", KEY)["data"] == {"retries": 0}
    monkeypatch.setattr(sys, "stdin", _Stdin("名前: 値\n"))
    run.json("config", "set", "apps/shop/設定", "-f", "-")
    assert run.json("config", "get", "apps/shop/設定")["data"] == {"名前": "値"}


class _Stdin:
    def __init__(self, text: str) -> None:
        self.buffer = _Buffer(text.encode())

    def isatty(self) -> bool:
        return False


class _Buffer:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


def test_shortcuts_edit_the_service_document(run: Run, store: ConfigStore) -> None:
    store.put(KEY, "timeout: 1\n")
    service = "helloworld.Greeter"
    run.json("degrade", service, "SayHello", "--force", "--return", '{"message": "busy"}')
    run.json("instance", "disable", "10.0.0.9:50051", "--service", service)
    run.json("weight", "10.0.0.7:50051", "20", "--service", service)
    data = run.json("config", "get", KEY)["data"]
    assert data == {
        "timeout": 1,
        "degrade": {"SayHello": {"mode": "force", "return": {"message": "busy"}}},
        "instances": {"10.0.0.9:50051": {"disabled": True}, "10.0.0.7:50051": {"weight": 20}},
    }
    run.json("degrade", service, "SayHello", "--off")
    run.json("instance", "enable", "10.0.0.9:50051", "--service", service)
    assert run.json("config", "get", KEY)["data"] == {
        "timeout": 1,
        "instances": {"10.0.0.7:50051": {"weight": 20}},
    }
    again = run.json("instance", "enable", "10.0.0.9:50051", "--service", service)
    assert again["changed"] is False
    history = run.json("config", "history", KEY)
    assert history[0]["message"].startswith("10.0.0.9:50051 of helloworld.Greeter")
    code, _, err = run("degrade", service, "SayHello", "--fail", "--throw", "NOPE")
    assert code == 1 and "degrade.SayHello.throw" in err


def _editor(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor.py"
    script.write_text(textwrap.dedent(body))
    return f"{sys.executable} {script}"


def test_edit_validates_and_writes_with_cas(
    run: Run, store: ConfigStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    store.put(KEY, "timeout: 1\n")
    monkeypatch.setenv(
        "EDITOR",
        _editor(
            tmp_path,
            """
            import sys
            path = sys.argv[1]
            text = open(path).read()
            open(path, "w").write(text.replace("timeout: 1", "timeout: 5"))
            """,
        ),
    )
    result = run.json("config", "edit", KEY, "-m", "edited")
    assert result["changed"]
    assert run.json("config", "get", KEY)["value"] == "timeout: 5\n"

    # An edit that somebody else's write overtakes is refused, and the draft is kept.
    monkeypatch.setenv(
        "EDITOR",
        _editor(
            tmp_path,
            f"""
            import sys
            from dubbok.config import ConfigStore
            with ConfigStore.from_url({url!r}) as store:
                store.put({KEY!r}, "timeout: 9\\n")
            open(sys.argv[1], "w").write("timeout: 6\\n")
            """,
        ),
    )
    code, _, err = run("config", "edit", KEY)
    assert code == 3
    assert "your edit is saved in" in err
    assert run.json("config", "get", KEY)["value"] == "timeout: 9\n"


def test_validate_schema_and_completion_need_no_registry(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DUBBOK_REGISTRY")
    good = tmp_path / "good.yaml"
    good.write_text("timeout: 1\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("timeout: 1\nbreaker: {method: {error_ratio: 2}}\n")
    code, out, _ = run("config", "validate", str(good), str(bad))
    assert code == 1
    assert "good.yaml: valid" in out
    assert "breaker.method.error_ratio: must be less than or equal to 1" in out
    code, out, _ = run("config", "schema")
    assert code == 0 and json.loads(out)["title"] == "dubbok governance rule document"
    code, out, _ = run("completion", "bash")
    assert code == 0 and "_DUBBOK_COMPLETE" in out


def test_the_console_script_watches_changes(url: str, store: ConfigStore) -> None:
    command = [sys.executable, "-m", "dubbok.cli", "config", "watch", "services/",
               "--count", "1", "--duration", "30", "--json"]  # fmt: skip
    env = dict(os.environ, DUBBOK_REGISTRY=url)
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        try:
            assert p.stdout is not None and p.stderr is not None
            assert b"watching services/" in p.stderr.readline()  # the watch is set
            store.put(KEY, "retries: 1\n")
            out, _ = p.communicate(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 0
    event = json.loads(out.decode().splitlines()[0])
    assert (event["key"], event["action"], event["value"]) == (KEY, "put", "retries: 1\n")


def test_etcd_authentication_options(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    with EtcdServer() as secured:
        secured.enable_auth("root", "s3cret")
        monkeypatch.setenv("DUBBOK_REGISTRY", f"{secured.url}/?namespace=auth")
        code, _, err = run("config", "set", KEY, "timeout: 1", "--timeout", "2")
        assert code == 2, err
        assert secured.endpoint in err
        written = run.json(
            "config", "set", KEY, "timeout: 1", "--user", "root", "--password", "s3cret"
        )
        assert written["changed"]
        monkeypatch.setenv("DUBBOK_USER", "root")
        monkeypatch.setenv("DUBBOK_PASSWORD", "s3cret")
        assert run.json("config", "get", KEY)["value"] == "timeout: 1"
