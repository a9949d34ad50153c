"""The only way out of a dependency build: an HTTPS CONNECT proxy on a Unix socket that
opens tunnels to the package index's host names only, and never to a loopback, private,
link-local or otherwise non-public address, whatever a name resolves to.

The build container has no network at all (`network_mode="none"`); its program
(sandbox/buildstep.py) forwards 127.0.0.1:3128 inside the container to this socket, which
is bind-mounted in. So a requirement file, an index URL or a package's setup.py can reach
the index and nothing else: not the host's loopback (the model server, a Docker TCP socket),
not the Docker gateway, not a cloud metadata address. TLS stays end to end (CONNECT); an
upstream proxy from the host's HTTPS_PROXY is chained to for the allowed names only.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import socketserver
import threading
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_INDEX_HOSTS = ("pypi.org", "files.pythonhosted.org")
HEADER_LIMIT = 8192
CONNECT_TIMEOUT_S = 20.0


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class _Handler(socketserver.BaseRequestHandler):
    server: BuildProxy._Server

    def handle(self) -> None:
        client: socket.socket = self.request
        client.settimeout(CONNECT_TIMEOUT_S)
        try:
            head = self._read_head(client)
            host, port = self._target(head)
            upstream = self.server.owner.open(host, port)
        except _Refused as exc:
            self.server.owner.refused.append(str(exc))
            self._reply(client, f"403 {exc}")
            return
        except OSError:
            self._reply(client, "502 cannot reach the index")
            return
        self._reply(client, "200 Connection established")
        client.settimeout(None)
        upstream.settimeout(None)
        _pipe(client, upstream)

    @staticmethod
    def _read_head(client: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = client.recv(1024)
            if not chunk:
                raise _Refused("no request")
            data += chunk
            if len(data) > HEADER_LIMIT:
                raise _Refused("request too large")
        return data.split(b"\r\n", 1)[0]

    @staticmethod
    def _target(line: bytes) -> tuple[str, int]:
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or parts[0].upper() != "CONNECT":
            raise _Refused("only HTTPS (CONNECT) to the package index")
        host, _, port = parts[1].rpartition(":")
        host = host.strip("[]").lower()
        if not host or port != "443":
            raise _Refused(f"{parts[1]} is not an index host on port 443")
        return host, 443

    @staticmethod
    def _reply(client: socket.socket, status: str) -> None:
        try:
            client.sendall(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode())
        except OSError:
            pass


class _Refused(Exception):
    pass


def _pipe(a: socket.socket, b: socket.socket) -> None:
    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join()
    a.close()
    b.close()


class BuildProxy:
    """A running proxy at `socket_path`; a context manager that stops it on exit."""

    class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True
        owner: BuildProxy

    def __init__(self, socket_path: Path, hosts: Iterable[str] = DEFAULT_INDEX_HOSTS,
                 upstream: str | None = None) -> None:
        self.socket_path = socket_path
        self.hosts = frozenset(h.strip().lower() for h in hosts if h.strip())
        self.upstream = urlsplit(upstream) if upstream else None
        self.refused: list[str] = []
        self._server = self._Server(str(socket_path), _Handler)
        self._server.owner = self
        os.chmod(socket_path, 0o666)  # the build runs as root, but not necessarily our root
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> BuildProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def open(self, host: str, port: int) -> socket.socket:
        """A connection to an allowed `host`, checked after resolution (no DNS rebinding to a
        private address)."""
        if host not in self.hosts:
            raise _Refused(f"{host} is not a package index host")
        if self.upstream is not None and self.upstream.hostname:
            return self._via_upstream(host, port)
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        public = [info for info in infos if _public(info[4][0])]
        if not public:
            raise _Refused(f"{host} does not resolve to a public address")
        family, kind, proto, _, address = public[0]
        conn = socket.socket(family, kind, proto)
        conn.settimeout(CONNECT_TIMEOUT_S)
        conn.connect(address)
        return conn

    def _via_upstream(self, host: str, port: int) -> socket.socket:
        up = self.upstream
        assert up is not None and up.hostname
        conn = socket.create_connection((up.hostname, up.port or 3128), CONNECT_TIMEOUT_S)
        conn.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply and len(reply) < HEADER_LIMIT:
            chunk = conn.recv(1024)
            if not chunk:
                break
            reply += chunk
        if reply.split(b" ", 2)[1:2] != [b"200"]:
            conn.close()
            raise OSError("the upstream proxy refused the tunnel")
        return conn
