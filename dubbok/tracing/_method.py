"""Per-method attribute tables, built on first use and cached for the life of the observer.

The hot path must not build attribute dicts: each span or measurement reuses one made the
first time that method (and load balancer, endpoint, status code...) was seen. The SDK copies
attributes it is given, so sharing these dicts between calls and threads is safe.
"""

from __future__ import annotations

import ipaddress

import grpc

from ..endpoint import Endpoint
from . import _semconv as sc
from ._semconv import Semconv

__all__ = ["EndTables", "MethodInfo", "MethodTable"]

# Endpoints churn (pods come and go): bound the per-method endpoint cache.
_MAX_CACHED = 1024
_CODES = tuple(grpc.StatusCode)


class EndTables:
    """Attributes a span gets when it ends, per status code, for clients and servers."""

    __slots__ = ("client", "server")

    def __init__(self, mode: Semconv) -> None:
        self.client = {c: sc.span_end(mode, c, server=False) for c in _CODES}
        self.server = {c: sc.span_end(mode, c, server=True) for c in _CODES}


def _ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class MethodInfo:
    """One ``service/method``: its span name and every attribute set its calls use."""

    __slots__ = (
        "_attempt",
        "_call",
        "_client_metric",
        "_mode",
        "_served",
        "_server_metric",
        "base",
        "event_attrs",
        "method",
        "name",
        "service",
        "start",
    )

    def __init__(self, mode: Semconv, service: str, method: str) -> None:
        self._mode = mode
        self.service = service
        self.method = method
        self.name = f"{service}/{method}"
        self.base = sc.span_base(mode, service, method)
        # Spans start with the success status already set: most calls succeed, and an
        # attribute given at creation costs a fraction of one set later (the end of a failed
        # call overwrites it). Exporters only ever see finished spans.
        self.start: dict[str, str | int] = {
            **self.base,
            **sc.span_end(mode, grpc.StatusCode.OK, server=False),
        }
        # Counters of governance events: per method, in the convention's naming.
        self.event_attrs: dict[str, str] = {}
        if Semconv.OLD in mode:
            self.event_attrs[sc.RPC_SERVICE] = service
        self.event_attrs[sc.RPC_METHOD] = self.base[sc.RPC_METHOD]
        self._call: dict[tuple[str, str], dict[str, str | int]] = {}
        self._attempt: dict[tuple[str, int], dict[str, str | int]] = {}
        self._served: dict[str, dict[str, str | int]] = {}
        self._client_metric: dict[grpc.StatusCode, tuple[dict[str, str | int], ...]] = {}
        self._server_metric: dict[grpc.StatusCode, tuple[dict[str, str | int], ...]] = {}

    def call_attrs(self, loadbalance: str, cluster: str) -> dict[str, str | int]:
        attrs = self._call.get((loadbalance, cluster))
        if attrs is None:
            attrs = dict(self.start)
            if loadbalance:
                attrs[sc.DUBBOK_LOADBALANCE] = loadbalance
            if cluster:
                attrs[sc.DUBBOK_CLUSTER] = cluster
            self._call[loadbalance, cluster] = attrs
        return attrs

    def attempt_attrs(self, endpoint: Endpoint, number: int) -> dict[str, str | int]:
        key = (endpoint.address, number)
        attrs = self._attempt.get(key)
        if attrs is None:
            if len(self._attempt) >= _MAX_CACHED:
                self._attempt = {}
            attrs = {
                **self.start,
                sc.SERVER_ADDRESS: endpoint.host,
                sc.SERVER_PORT: endpoint.port,
                sc.DUBBOK_ATTEMPT: number,
            }
            # The connection goes straight to the endpoint: when its host is an address,
            # it is the peer's (its port is server.port, not repeated).
            if _ip(endpoint.host):
                attrs[sc.NETWORK_PEER_ADDRESS] = endpoint.host
            self._attempt[key] = attrs
        return attrs

    def server_attrs(self, peer: str) -> dict[str, str | int]:
        """A server span's attributes for a call from ``peer`` (grpc's ``context.peer()``:
        one per client connection, so most calls find theirs built)."""
        attrs = self._served.get(peer)
        if attrs is None:
            if len(self._served) >= _MAX_CACHED:
                self._served = {}
            host, port = sc.split_peer(peer)
            attrs = {**self.start, sc.NETWORK_PEER_ADDRESS: host}
            if port is not None:
                attrs[sc.NETWORK_PEER_PORT] = port
            self._served[peer] = attrs
        return attrs

    def client_metric(self, code: grpc.StatusCode) -> tuple[dict[str, str | int], ...]:
        """``(old-convention attrs, stable-convention attrs)``, either ``{}`` when unused."""
        attrs = self._client_metric.get(code)
        if attrs is None:
            attrs = self._metric(code, server=False)
            self._client_metric[code] = attrs
        return attrs

    def server_metric(self, code: grpc.StatusCode) -> tuple[dict[str, str | int], ...]:
        attrs = self._server_metric.get(code)
        if attrs is None:
            attrs = self._metric(code, server=True)
            self._server_metric[code] = attrs
        return attrs

    def _metric(self, code: grpc.StatusCode, server: bool) -> tuple[dict[str, str | int], ...]:
        old = sc.metric_old(self.service, self.method, code) if Semconv.OLD in self._mode else {}
        new = (
            sc.metric_stable(self.service, self.method, code, server)
            if Semconv.STABLE in self._mode
            else {}
        )
        return old, new


class MethodTable:
    """``MethodInfo`` by ``(service, method)``; readers take no lock (a racing first call
    may build an entry twice, and either copy is right)."""

    __slots__ = ("_infos", "mode")

    def __init__(self, mode: Semconv) -> None:
        self.mode = mode
        self._infos: dict[tuple[str, str], MethodInfo] = {}

    def get(self, service: str, method: str) -> MethodInfo:
        info = self._infos.get((service, method))
        if info is None:
            info = MethodInfo(self.mode, service, method)
            self._infos[service, method] = info
        return info
