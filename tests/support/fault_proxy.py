"""A TCP proxy on loopback that injects faults between a client and a real HTTP server.

Each new connection takes the next planned fault (``pass`` when none is planned):
``pass`` (forward), ``delay:S`` (wait S seconds, then forward), ``500`` / ``429``
(answer that status without forwarding), ``drop`` (read the request, close),
``cut:N`` (forward, but close after N bytes of the answer). Every forwarded request
gets ``Connection: close``, so each request is one connection and one fault.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.faults: deque[str] = deque()
        self.connections = 0
        #: Each request's headers (lower-case names), in arrival order.
        self.heads: list[dict[str, str]] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        threading.Thread(target=self._run, name="fault-proxy", daemon=True).start()
        self._ready.wait(10)

    def plan(self, *faults: str) -> None:
        self.faults.clear()
        self.faults.extend(faults)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        fault = self.faults.popleft() if self.faults else "pass"
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.heads.append(
                {
                    k.strip().lower(): v.strip()
                    for k, _, v in (h.partition(":") for h in lines[1:] if h)
                }
            )
            length = next(
                (int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")),
                0,
            )
            body = await reader.readexactly(length)
            if fault == "drop":
                return
            if fault in ("500", "429"):
                status = {"500": "500 Internal Server Error", "429": "429 Too Many Requests"}
                payload = b'{"error": {"message": "injected", "type": "injected", "code": 1}}'
                writer.write(
                    f"HTTP/1.1 {status[fault]}\r\nContent-Type: application/json\r\n"
                    f"Retry-After: 0\r\nContent-Length: {len(payload)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
                return
            if fault.startswith("delay:"):
                await asyncio.sleep(float(fault.split(":", 1)[1]))
            kept = [h for h in lines if h and not h.lower().startswith("connection:")]
            request = ("\r\n".join([*kept, "Connection: close"]) + "\r\n\r\n").encode() + body
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            up_writer.write(request)
            await up_writer.drain()
            budget = int(fault.split(":", 1)[1]) if fault.startswith("cut:") else None
            sent = 0
            while data := await up_reader.read(4096):
                if budget is not None and sent + len(data) > budget:
                    writer.write(data[: budget - sent])
                    break
                writer.write(data)
                sent += len(data)
                await writer.drain()
            up_writer.close()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
