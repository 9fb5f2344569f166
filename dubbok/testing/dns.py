"""A small authoritative DNS server on loopback, for testing DNS discovery for real.

::

    from dubbok.testing.dns import DnsServer

    with DnsServer() as dns_server:
        dns_server.set_a("greeter.shop.svc.cluster.local", ["127.0.0.2", "127.0.0.3"], ttl=1)
        url = dns_server.url("greeter.shop.svc.cluster.local", 50051, min_ttl=0.1)
        # dns:///greeter.shop.svc.cluster.local:50051?nameserver=127.0.0.1:PORT&min_ttl=0.1
        dns_server.set_a("greeter.shop.svc.cluster.local", ["127.0.0.2"], ttl=1)  # a pod left
        dns_server.fail("greeter.shop.svc.cluster.local", "servfail")               # DNS trouble

It answers UDP and TCP on one OS-assigned port from one daemon thread, built on dnspython's
wire format. Records and failure modes change at runtime from any thread. A UDP answer
larger than the client allows (512 bytes, or its EDNS size) is sent truncated, so clients
retry over TCP as they would against a real server. Every question is counted and
timestamped per name and type, so tests can assert when re-resolution happened.

Answers: a configured failure mode wins; a name with no records is NXDOMAIN; a name with
records of other types only is NOERROR with an empty answer. SRV answers carry the
targets' A/AAAA records in the additional section unless ``additional`` is False.
"""

from __future__ import annotations

import contextlib
import ipaddress
import selectors
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Literal
from urllib.parse import urlencode

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["DnsServer", "FailureMode"]

FailureMode = Literal["servfail", "nxdomain", "timeout"]
"""``timeout`` drops the question without an answer (a TCP connection is closed)."""

_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_SRV = dns.rdatatype.SRV
_MODES = ("servfail", "nxdomain", "timeout")


def _name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)  # always absolute: "a.b" and "a.b." are one name


class DnsServer:
    """Authoritative DNS on ``host`` (loopback), UDP and TCP on one port.

    ``start``/``stop`` or use it as a context manager. All methods are thread-safe.
    """

    def __init__(self, host: str = "127.0.0.1", *, additional: bool = True) -> None:
        self.host = host
        self.additional = additional
        self._lock = threading.Lock()
        self._records: dict[dns.name.Name, dict[dns.rdatatype.RdataType, dns.rrset.RRset]] = {}
        self._failures: dict[dns.name.Name, FailureMode] = {}
        self._queries: defaultdict[tuple[dns.name.Name, dns.rdatatype.RdataType], list[float]] = (
            defaultdict(list)
        )
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # lifecycle -----------------------------------------------------------------------------

    def start(self) -> DnsServer:
        if self._thread is not None:
            raise RuntimeError("DnsServer already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        for _ in range(20):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            udp.bind((self.host, 0))
            port = udp.getsockname()[1]
            tcp = socket.socket(family, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind((self.host, port))
            except OSError:  # the TCP twin of this UDP port is taken: try another port
                udp.close()
                tcp.close()
                continue
            tcp.listen(16)
            break
        else:
            raise OSError(f"no port on {self.host} free for both UDP and TCP")
        self._udp, self._tcp, self._port = udp, tcp, port
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(
            target=self._serve, name=f"dubbok-testing-dns:{port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering and release the sockets. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None and self._wake_w is not None:
            self._wake_w.send(b"x")
            thread.join(5)
        for sock in (self._udp, self._tcp, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._udp = self._tcp = self._wake_r = self._wake_w = None

    def __enter__(self) -> DnsServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def nameserver(self) -> str:
        """``"127.0.0.1:PORT"``, as the ``nameserver`` URL parameter takes it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self._port}"

    def url(self, name: str, port: int | None = None, **params: object) -> str:
        """A discovery URL asking this server: ``dns:///name:port``, or ``dns+srv:///name``."""
        query = urlencode({"nameserver": self.nameserver, **params})
        if port is None:
            return f"dns+srv:///{name}?{query}"
        return f"dns:///{name}:{port}?{query}"

    # records -------------------------------------------------------------------------------

    def set_a(self, name: str, ips: Sequence[str], ttl: int = 5) -> None:
        """Replace ``name``'s A records; an empty list leaves the name with no A record."""
        self._set(name, _A, [str(ipaddress.IPv4Address(ip)) for ip in ips], ttl)

    def set_aaaa(self, name: str, ips: Sequence[str], ttl: int = 5) -> None:
        """Replace ``name``'s AAAA records."""
        self._set(name, _AAAA, [str(ipaddress.IPv6Address(ip)) for ip in ips], ttl)

    def set_srv(
        self, name: str, records: Iterable[tuple[int, int, int, str]], ttl: int = 5
    ) -> None:
        """Replace ``name``'s SRV records, each ``(priority, weight, port, target)``."""
        texts = [f"{p} {w} {port} {_name(target)}" for p, w, port, target in records]
        self._set(name, _SRV, texts, ttl)

    def remove(self, name: str) -> None:
        """Forget every record of ``name``: it becomes NXDOMAIN."""
        with self._lock:
            self._records.pop(_name(name), None)

    def fail(self, name: str, mode: FailureMode) -> None:
        """Answer questions about ``name`` with SERVFAIL or NXDOMAIN, or not at all."""
        if mode not in _MODES:
            raise ValueError(f"failure mode {mode!r}; choose one of {', '.join(_MODES)}")
        with self._lock:
            self._failures[_name(name)] = mode

    def heal(self, name: str) -> None:
        """Answer questions about ``name`` normally again."""
        with self._lock:
            self._failures.pop(_name(name), None)

    def _set(self, name: str, rdtype: dns.rdatatype.RdataType, texts: list[str], ttl: int) -> None:
        owner = _name(name)
        rrset = dns.rrset.from_text_list(owner, ttl, dns.rdataclass.IN, rdtype, texts)
        with self._lock:
            self._records.setdefault(owner, {})[rdtype] = rrset

    # question log --------------------------------------------------------------------------

    def query_times(self, name: str, rdtype: str = "A") -> list[float]:
        """``time.monotonic()`` of each question about ``name`` and ``rdtype``, in order."""
        key = (_name(name), dns.rdatatype.from_text(rdtype))
        with self._lock:
            return list(self._queries.get(key, ()))

    def query_count(self, name: str, rdtype: str | None = None) -> int:
        """How many questions about ``name`` arrived (of ``rdtype``, or of any type)."""
        owner = _name(name)
        wanted = None if rdtype is None else dns.rdatatype.from_text(rdtype)
        with self._lock:
            return sum(
                len(times)
                for (n, t), times in self._queries.items()
                if n == owner and wanted in (None, t)
            )

    # serving -------------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self._udp is not None and self._tcp is not None and self._wake_r is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._udp, selectors.EVENT_READ, "udp")
            selector.register(self._tcp, selectors.EVENT_READ, "tcp")
            selector.register(self._wake_r, selectors.EVENT_READ, "stop")
            while True:
                for key, _ in selector.select():
                    if key.data == "stop":
                        return
                    if key.data == "udp":
                        self._serve_udp(self._udp)
                    else:
                        self._serve_tcp(self._tcp)

    def _serve_udp(self, udp: socket.socket) -> None:
        try:
            wire, peer = udp.recvfrom(65535)
        except OSError:
            return
        reply = self._answer(wire, udp=True)
        if reply is not None:
            with contextlib.suppress(OSError):
                udp.sendto(reply, peer)

    def _serve_tcp(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        # One client at a time on the serving thread: test clients send at once.
        with conn:
            conn.settimeout(2.0)
            try:
                while True:
                    header = _recv_exactly(conn, 2)
                    if header is None:
                        return
                    wire = _recv_exactly(conn, int.from_bytes(header, "big"))
                    if wire is None:
                        return
                    reply = self._answer(wire, udp=False)
                    if reply is None:
                        return
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)
            except OSError:
                return

    def _answer(self, wire: bytes, *, udp: bool) -> bytes | None:
        try:
            query = dns.message.from_wire(wire)
        except dns.exception.DNSException:
            return None  # cannot even echo an id back
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY or len(query.question) != 1:
            response.set_rcode(dns.rcode.NOTIMP)
            return response.to_wire()
        question = query.question[0]
        with self._lock:
            self._queries[(question.name, question.rdtype)].append(time.monotonic())
            mode = self._failures.get(question.name)
            if mode == "timeout":
                return None
            if question.rdclass != dns.rdataclass.IN:
                response.set_rcode(dns.rcode.REFUSED)
            elif mode == "servfail":
                response.set_rcode(dns.rcode.SERVFAIL)
            elif mode == "nxdomain" or question.name not in self._records:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                self._fill(response, question.name, question.rdtype)
        max_size = (query.payload if query.edns >= 0 else 512) if udp else 65535
        try:
            return response.to_wire(max_size=max_size)
        except dns.exception.TooBig:
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.AA | dns.flags.TC
            return truncated.to_wire()

    def _fill(
        self, response: dns.message.Message, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> None:
        rrset = self._records[name].get(rdtype)
        if rrset is None or len(rrset) == 0:
            return
        response.answer.append(rrset)
        if rdtype != _SRV or not self.additional:
            return
        targets = {record.target for record in rrset}
        for target in sorted(targets):
            for glue_type in (_A, _AAAA):
                glue = self._records.get(target, {}).get(glue_type)
                if glue is not None and len(glue) > 0:
                    response.additional.append(glue)


def _recv_exactly(conn: socket.socket, size: int) -> bytes | None:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data
