"""``dubbok services ls|show`` and ``dubbok call`` against a real etcd and real providers."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import dubbok
import dubbok.cli
from dubbok.cli import main
from dubbok.endpoint import Endpoint
from dubbok.registry import ConsumerInfo
from dubbok.registry.record import consumer_key, encode_consumer, encode_provider, provider_key
from dubbok.testing import EchoServicer, free_port
from dubbok.testing.etcd import EtcdServer
from dubbok.testing.pb import echo_pb2_grpc

pytestmark = pytest.mark.etcd

ECHO = "dubbok.testing.v1.Echo"
_namespaces = itertools.count()


@dataclass(frozen=True)
class Cluster:
    """Two Echo providers (app ``p``) and one consumer (app ``c``) in one namespace."""

    etcd: EtcdServer
    url: str
    addresses: tuple[str, ...]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with EtcdServer() as etcd:
        url = f"{etcd.url}/?namespace=cli-services"
        snapshots = tmp_path_factory.mktemp("snapshots")
        apps = [dubbok.App("p", registry=url, drain=0, snapshot_dir=snapshots) for _ in range(2)]
        consumer = dubbok.App("c", registry=url, snapshot_dir=snapshots)
        try:
            ports = [
                app.serve(EchoServicer(f"p{i}"), host="127.0.0.1") for i, app in enumerate(apps)
            ]
            consumer.reference(echo_pb2_grpc.EchoStub, ECHO)
            yield Cluster(etcd, url, tuple(f"127.0.0.1:{port}" for port in ports))
        finally:
            consumer.close()
            for app in apps:
                app.stop(0)


@pytest.fixture(autouse=True)
def _commands(monkeypatch: pytest.MonkeyPatch) -> None:
    services = ("dubbok.cli.services:services", "Providers and consumers registered in etcd.")
    call = ("dubbok.cli.call:call", "Call a unary method with a JSON request.")
    monkeypatch.setitem(dubbok.cli.COMMANDS, "services", services)
    monkeypatch.setitem(dubbok.cli.COMMANDS, "call", call)


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
def run(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> Run:
    """Runs the command line in this process, with DUBBOK_REGISTRY set to the cluster's."""
    monkeypatch.setenv("DUBBOK_REGISTRY", cluster.url)
    return Run(capsys)


def fresh_namespace(cluster: Cluster) -> tuple[str, str]:
    namespace = f"cli-extra{next(_namespaces)}"
    return namespace, f"{cluster.etcd.url}/?namespace={namespace}"


def put_consumer(cluster: Cluster, namespace: str, service: str) -> None:
    info = ConsumerInfo(app="web", host="h1", pid=42)
    cluster.etcd.put(consumer_key(namespace, service, info), encode_consumer(info, started_at=0))


# -- services ---------------------------------------------------------------------------------


def test_ls_counts_providers_and_consumers(run: Run) -> None:
    code, out, err = run("services", "ls")
    assert code == 0, err
    row = next(line for line in out.splitlines() if ECHO in line)
    assert row.split() == [ECHO, "2", "1"]
    assert "1 service(s) in namespace 'cli-services'" in err
    data = run.json("services", "ls")
    assert data == {
        "namespace": "cli-services",
        "services": [{"service": ECHO, "providers": 2, "consumers": 1}],
        "skipped": [],
    }


def test_show_lists_each_provider_and_the_consumer(run: Run, cluster: Cluster) -> None:
    code, out, err = run("services", "show", ECHO)
    assert code == 0, err
    for address in cluster.addresses:
        row = next(line for line in out.splitlines() if address in line)
        assert row.split()[1:5] == ["p", "-", "-", "100"]  # app, version, group, weight
    assert "consumers (1)" in out
    data = run.json("services", "show", ECHO)
    assert sorted(p["address"] for p in data["providers"]) == sorted(cluster.addresses)
    for provider in data["providers"]:
        assert provider["app"] == "p" and provider["weight"] == 100
        assert 0 <= provider["age_seconds"] < 600
    (consumer,) = data["consumers"]
    assert consumer["app"] == "c" and isinstance(consumer["pid"], int) and consumer["host"]


def test_show_renders_version_group_tags_and_age(run: Run, cluster: Cluster) -> None:
    namespace, url = fresh_namespace(cluster)
    endpoint = Endpoint(
        "10.0.0.7", 50051, weight=20, version="1.2.0", group="blue", app="shop",
        tags={"zone": "a", "track": "canary"},
    )  # fmt: skip
    record = encode_provider(endpoint, pid=7, started_at=time.time() - 3 * 3600 - 90)
    cluster.etcd.put(provider_key(namespace, "shop.Cart", endpoint.address), record)
    code, out, err = run("services", "show", "shop.Cart", "--registry", url)
    assert code == 0, err
    row = next(line for line in out.splitlines() if "10.0.0.7:50051" in line)
    assert row.split() == ["10.0.0.7:50051", "shop", "1.2.0", "blue", "20", "track=canary,zone=a",
                           "3h01m"]  # fmt: skip
    assert "consumers (0)" in out
    assert run("services", "ls", "--registry", url)[1].count("shop.Cart") == 1


def test_a_corrupt_record_is_skipped_and_named(run: Run, cluster: Cluster) -> None:
    namespace, url = fresh_namespace(cluster)
    bad = provider_key(namespace, "shop.Cart", "10.0.0.8:50051")
    cluster.etcd.put(bad, b"{not json")
    info = ConsumerInfo(app="web", host="h1", pid=42)
    cluster.etcd.put(
        consumer_key(namespace, "shop.Cart", info), encode_consumer(info, started_at=0)
    )
    code, _, err = run("services", "ls", "--registry", url)
    assert code == 0
    assert f"skipped {bad}" in err and "not JSON" in err
    data = run.json("services", "ls", "--registry", url)
    assert data["services"] == [{"service": "shop.Cart", "providers": 0, "consumers": 1}]
    assert [s["key"] for s in data["skipped"]] == [bad]


def test_show_of_an_unknown_service_suggests_the_known_ones(run: Run) -> None:
    code, _, err = run("services", "show", "dubbok.testing.v1.Ecko")
    assert code == 1
    assert "dubbok.testing.v1.Ecko" in err and f"did you mean {ECHO}?" in err
    code, _, err = run("services", "show", "no/slash")
    assert code == 1 and "invalid service name" in err


def test_an_empty_namespace_lists_nothing(run: Run, cluster: Cluster) -> None:
    _, url = fresh_namespace(cluster)
    code, out, err = run("services", "ls", "--registry", url)
    assert code == 0 and out == "" and "no service is registered" in err
    assert run.json("services", "ls", "--registry", url)["services"] == []


# -- call -------------------------------------------------------------------------------------


def test_call_prints_the_reply(run: Run) -> None:
    code, out, err = run("call", f"{ECHO}/Echo", '{"text": "hi"}', "-H", "x-user=alice")
    assert code == 0, err
    reply = json.loads(out)
    assert reply["text"] == "hi" and reply["served_by"] in ("p0", "p1")
    assert reply["metadata"]["x-user"] == "alice"
    assert out.startswith("{\n  ")  # indented for people
    assert f"{ECHO}/Echo: OK in" in err
    code, out, err = run("call", f"{ECHO}/Echo", '{"text": "hi"}', "--json")
    assert code == 0, err
    assert out.count("\n") == 1 and json.loads(out)["text"] == "hi" and err == ""


def test_call_with_static_discovery_and_stdin(
    run: Run, cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    monkeypatch.delenv("DUBBOK_REGISTRY")
    monkeypatch.setattr("sys.stdin", io.StringIO('{"text": "from stdin"}'))
    static = f"static://{cluster.addresses[1]}"
    reply = run.json("call", f"{ECHO}/Echo", "-", "--discovery", static)
    assert reply["text"] == "from stdin" and reply["served_by"] == "p1"


def test_bad_json_and_fields_that_do_not_fit(run: Run) -> None:
    code, _, err = run("call", f"{ECHO}/Echo", '{"text": ')
    assert code == 1 and "not valid JSON" in err
    code, _, err = run("call", f"{ECHO}/Echo", "[1]")
    assert code == 1 and "must be a JSON object" in err
    code, _, err = run("call", f"{ECHO}/Echo", '{"txet": "hi"}')
    assert code == 1
    assert 'no field named "txet"' in err and "text (string)" in err
    code, _, err = run("call", f"{ECHO}/Echo", '{"delay": "soon"}', "--json")
    assert code == 1
    problem = json.loads(err)
    assert problem["error"] == "CallError" and "delay" in problem["message"]


def test_unknown_service_method_and_streaming_methods(run: Run, cluster: Cluster) -> None:
    code, _, err = run("call", "dubbok.testing.v1.Ecko/Echo", "{}")
    assert code == 1 and f"did you mean {ECHO}?" in err
    code, _, err = run("call", f"{ECHO}/Ecko", "{}")
    assert code == 1 and "has no method 'Ecko'" in err and "Echo, EchoStream" in err
    code, _, err = run("call", f"{ECHO}/EchoStream", "{}")
    assert code == 1 and "server-streaming" in err
    static = f"static://{cluster.addresses[0]}"
    code, _, err = run("call", "helloworld.Greeter/SayHello", "{}", "--discovery", static)
    assert code == 1 and f"does not serve helloworld.Greeter; it serves {ECHO}" in err
    code, _, err = run("call", f"{ECHO}/Echo", "{}", "--version", "9.*")
    assert code == 1 and "none with version '9.*'" in err
    assert run("call", "Echo", "{}")[0] == 1  # no METHOD


def test_consumers_without_a_provider_mean_unreachable(run: Run, cluster: Cluster) -> None:
    namespace, url = fresh_namespace(cluster)
    info = ConsumerInfo(app="web", host="h1", pid=42)
    cluster.etcd.put(
        consumer_key(namespace, "shop.Cart", info), encode_consumer(info, started_at=0)
    )
    code, _, err = run("call", "shop.Cart/Add", "{}", "--registry", url)
    assert code == 2 and "no provider of shop.Cart" in err and "1 consumer(s)" in err


def test_status_of_a_failed_call(run: Run) -> None:
    code, _, err = run("call", f"{ECHO}/Echo", '{"fail_code": 5}', "--json")  # NOT_FOUND
    assert code == 1
    problem = json.loads(err)
    assert problem["status"] == "NOT_FOUND" and "asked to fail" in problem["details"]
    code, _, err = run("call", f"{ECHO}/Echo", '{"fail_code": 14}')  # UNAVAILABLE
    assert code == 2 and "UNAVAILABLE" in err
    code, _, err = run("call", f"{ECHO}/Echo", '{"delay": 2}', "--timeout", "0.3")
    assert code == 2 and "DEADLINE_EXCEEDED" in err


def test_unreachable_etcd_and_provider(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    code, _, err = run("services", "ls", "--registry", f"etcd://{nowhere}", "--timeout", "1")
    assert code == 2 and nowhere in err
    code, _, err = run("services", "show", ECHO, "--registry", f"etcd://{nowhere}/?timeout=1")
    assert code == 2 and nowhere in err
    code, _, err = run("call", f"{ECHO}/Echo", "{}", "--registry", f"etcd://{nowhere}/?timeout=1")
    assert code == 2 and nowhere in err and "snapshot" not in err
    code, _, err = run("call", f"{ECHO}/Echo", "{}", "--discovery", f"static://{nowhere}")
    assert code == 2 and f"the provider at {nowhere}" in err
    monkeypatch.delenv("DUBBOK_REGISTRY")
    code, _, err = run("services", "ls")
    assert code == 1 and "no registry given" in err
    code, _, err = run("call", f"{ECHO}/Echo", "{}")
    assert code == 1 and "--discovery" in err


def test_flags_fold_into_the_registry_url(tmp_path: Path) -> None:
    from dubbok.cli.context import Backend
    from dubbok.cli.services import registry_url

    plain = "etcd://127.0.0.1:2379/?namespace=a"
    assert registry_url(Backend(plain)) == plain
    url = registry_url(
        Backend("etcd://u:p%40ss@h1:2379,h2:2379?namespace=a", namespace="b", timeout=1.5)
    )
    assert url == "etcd://h1:2379,h2:2379/?namespace=b&user=u&password=p%40ss&timeout=1.5"
    ca = str(tmp_path / "ca.pem")
    url = registry_url(Backend(plain, user="root", password="pw", cacert=ca))
    assert url == f"{plain}&ca={ca}&user=root&password=pw"


def test_metadata_and_defaults(run: Run) -> None:
    reply = run.json("call", f"{ECHO}/Echo", "{}", "--emit-defaults", "-H", "x-a=1", "-H", "x-b=2")
    assert reply["text"] == "" and reply["payload"] == ""  # printed although empty
    assert reply["metadata"]["x-a"] == "1" and reply["metadata"]["x-b"] == "2"
    code, _, err = run("call", f"{ECHO}/Echo", "{}", "-H", "novalue")
    assert code == 1 and "key=value" in err
    code, _, err = run("call", f"{ECHO}/Echo", "{}", "-H", "x-trace-bin=not base64!")
    assert code == 1 and "base64" in err


def test_a_provider_without_reflection_is_named(run: Run, tmp_path: Path) -> None:
    with dubbok.App("plain", reflection=False, snapshot_dir=tmp_path) as app:
        port = app.serve(EchoServicer("plain"), host="127.0.0.1")
        static = f"static://127.0.0.1:{port}"
        code, _, err = run("call", f"{ECHO}/Echo", "{}", "--discovery", static)
    assert code == 1
    assert f"127.0.0.1:{port} does not serve gRPC server reflection" in err
