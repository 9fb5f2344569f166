"""Live governance rules: a change in etcd changes a running consumer or provider, no restart."""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator

import grpc
import pytest

import dubbok
from dubbok.config import ConfigStore
from dubbok.testing import EchoServicer, Provider, serve_provider, wait_until
from dubbok.testing.etcd import EtcdServer
from dubbok.testing.pb import echo_pb2, echo_pb2_grpc

SERVICE = "dubbok.testing.v1.Echo"
RULES = f"services/{SERVICE}/governance"
_namespaces = itertools.count()


def req(**kw: object) -> echo_pb2.EchoRequest:
    return echo_pb2.EchoRequest(**kw)  # type: ignore[arg-type]


def poll(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    return wait_until(predicate, timeout, ignore=(dubbok.DubbokError,))


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture
def url(etcd: EtcdServer) -> str:
    return f"{etcd.url}/?namespace=live{next(_namespaces)}"


@pytest.fixture
def store(url: str) -> Iterator[ConfigStore]:
    with ConfigStore.from_url(url) as opened:
        yield opened


@contextlib.contextmanager
def providers(url: str, *servicers: EchoServicer) -> Iterator[list[Provider]]:
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                serve_provider(s, name=s.name, registry=url, drain=0.1, max_workers=8)
            )
            for s in servicers
        ]


def test_a_timeout_changes_live(url: str, store: ConfigStore) -> None:
    with providers(url, EchoServicer("p")), dubbok.App("c", registry=url) as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, timeout=2.0)
        assert echo.Echo(req(delay=0.3)).served_by == "p"
        store.put(RULES, "timeout: 0.1\n")

        def times_out() -> bool:
            try:
                echo.Echo(req(delay=0.3))
            except dubbok.DeadlineExceededError:
                return True
            return False

        assert poll(times_out)
        store.put(RULES, "methods:\n  Echo: {timeout: 1.0}\n")
        assert poll(lambda: echo.Echo(req(delay=0.3)).served_by == "p")


def test_load_balancer_weights_and_disabling_change_live(url: str, store: ConfigStore) -> None:
    with (
        providers(url, EchoServicer("a"), EchoServicer("b")) as (a, b),
        dubbok.App("c", registry=url) as app,
    ):
        echo = app.reference(echo_pb2_grpc.EchoStub, loadbalance="roundrobin")
        assert poll(lambda: len(echo.endpoints) == 2)  # type: ignore[attr-defined]
        assert set(Counter(echo.Echo(req()).served_by for _ in range(10))) == {"a", "b"}
        store.put(RULES, f"loadbalance: random\ninstances:\n  '{a.address}': {{disabled: true}}\n")
        assert poll(lambda: {echo.Echo(req()).served_by for _ in range(10)} == {"b"})
        assert echo._names[0] == "random"  # type: ignore[attr-defined]
        store.put(RULES, f"instances:\n  '{b.address}': {{weight: 0}}\n")
        assert poll(lambda: {echo.Echo(req()).served_by for _ in range(10)} == {"a"})
        assert echo._names[0] == "roundrobin"  # back to the code's choice


def test_a_breaker_threshold_changes_live(url: str, store: ConfigStore) -> None:
    with providers(url, EchoServicer("p")), dubbok.App("c", registry=url) as app:
        echo = app.reference(echo_pb2_grpc.EchoStub)
        internal = grpc.StatusCode.INTERNAL.value[0]
        for _ in range(5):  # default thresholds: five failures open nothing (min_calls 20)
            with pytest.raises(dubbok.RpcError) as info:
                echo.Echo(req(fail_code=internal))
            assert not isinstance(info.value, dubbok.CircuitOpenError)
        store.put(
            RULES,
            "breaker:\n  method: {consecutive_failures: 2, error_ratio: null, reset_timeout: 60}\n",
        )

        def opened() -> bool:
            for _ in range(3):
                try:
                    echo.Echo(req(fail_code=internal))
                except dubbok.CircuitOpenError:
                    return True
                except dubbok.RpcError:
                    pass
            return False

        assert poll(opened)


def test_a_degrade_switch_changes_live_and_a_bad_one_is_ignored(
    url: str, store: ConfigStore, caplog: pytest.LogCaptureFixture
) -> None:
    servicer = EchoServicer("p")
    with providers(url, servicer), dubbok.App("c", registry=url) as app:
        echo = app.reference(echo_pb2_grpc.EchoStub)
        assert echo.Echo(req(text="x")).text == "x"
        store.put(RULES, "degrade:\n  Echo: {mode: force, return: {text: busy}}\n")
        assert poll(lambda: echo.Echo(req(text="x")).text == "busy")
        calls = servicer.calls
        assert echo.Echo(req()).text == "busy"
        assert servicer.calls == calls  # forced: nothing sent
        # A rule the store accepts but that does not fit the response message is refused
        # when applied, with one error naming the field, and the previous rules stay.
        with caplog.at_level(logging.ERROR, logger="dubbok.config"):
            store.put(RULES, "degrade:\n  Echo: {mode: force, return: {nope: 1}}\n")

            def seen() -> bool:
                rule = app.config.rules_for(SERVICE).degrade("Echo")
                return rule is not None and rule.return_ == {"nope": 1}

            assert poll(seen)
            assert poll(lambda: any("nope" in r.getMessage() for r in caplog.records))
        assert echo.Echo(req()).text == "busy"
        store.put(RULES, "degrade:\n  Echo: {mode: 'off'}\n")
        assert poll(lambda: echo.Echo(req(text="live")).text == "live")


def test_provider_limits_change_live(url: str, store: ConfigStore) -> None:
    servicer = EchoServicer("p")
    with providers(url, servicer), dubbok.App("c", registry=url) as app:
        echo = app.reference(echo_pb2_grpc.EchoStub, retries=0, breaker=False)
        store.put(RULES, "limits:\n  Echo: {max_concurrency: 1}\n")

        def refused() -> bool:
            started = threading.Event()
            t = threading.Thread(target=lambda: (started.set(), echo.Echo(req(delay=0.4))))
            t.start()
            started.wait(2)
            poll(lambda: servicer.calls > 0, timeout=1)
            try:
                echo.Echo(req())
            except dubbok.RpcError as exc:
                return exc.code is grpc.StatusCode.RESOURCE_EXHAUSTED
            finally:
                t.join(5)
            return False

        assert poll(refused, timeout=10)


def test_app_config_gets_watches_and_binds_the_apps_settings(url: str, store: ConfigStore) -> None:
    from pydantic import BaseModel

    class Db(BaseModel):
        host: str = "localhost"
        pool_size: int = 4

    store.put("global/db", "host: db.global\npool_size: 5\n")
    with dubbok.App("shop", registry=url) as app:
        assert app.config.get("db/pool_size", 1, type=int) == 5
        db = app.config.bind(Db, "db")
        assert db.value.host == "db.global"
        seen: list[object] = []
        app.config.watch("db/pool_size", seen.append, type=int)
        store.put("apps/shop/db/pool_size", "20")  # the app's scope beats the global one
        assert poll(lambda: db.value.pool_size == 20)
        assert poll(lambda: 20 in seen)
        assert db.value.host == "db.global"


def test_an_app_without_a_registry_has_no_config_center() -> None:
    with dubbok.App("plain") as app, pytest.raises(dubbok.ConfigurationError, match="registry"):
        _ = app.config
