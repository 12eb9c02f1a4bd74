#!/usr/bin/env python3
"""A Docker API stand-in that answers `docker run --rm IMG CMD` at once.

bench/daemon.sh and bench/network.sh drive it with the same docker CLI as the
real daemons: what `docker run` costs against it is the CLI's own floor (its
start, its HTTP calls, its exit), which no daemon can go under.

    bench/instant-daemon.py /path/to/socket

It answers _ping, containers/create, attach (hijacked, no output), wait
(chunked; the status comes when start arrives) and start; anything else 404.
"""
import asyncio
import json
import os
import sys

CID = "0" * 64


def reply(status, body=b"", ctype="application/json", extra=""):
    head = (f"HTTP/1.1 {status}\r\nApi-Version: 1.43\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(body)}\r\n{extra}\r\n")
    return head.encode() + body


async def main(path):
    waiting = []  # (kind, writer) of hijacked attach and pending wait streams

    async def handle(r, w):
        try:
            while True:
                head = await r.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, url, _ = lines[0].split(" ", 2)
                length = 0
                for line in lines[1:]:
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                if length:
                    await r.readexactly(length)
                if url.endswith("/_ping"):
                    w.write(reply("200 OK", b"" if method == "HEAD" else b"OK", "text/plain",
                                  "Ostype: linux\r\nServer: Docker/28.0.0 (linux)\r\n"))
                elif "/containers/create" in url:
                    w.write(reply("201 Created", json.dumps({"Id": CID, "Warnings": []}).encode()))
                elif "/attach" in url:
                    w.write(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream"
                            b"\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                    await w.drain()
                    waiting.append(("attach", w))
                    return
                elif "/wait" in url:
                    w.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n")
                    await w.drain()
                    waiting.append(("wait", w))
                    return
                elif url.endswith("/start"):
                    w.write(b"HTTP/1.1 204 No Content\r\nApi-Version: 1.43\r\n\r\n")
                    await w.drain()
                    for kind, other in waiting:
                        if kind == "wait":
                            b = json.dumps({"StatusCode": 0, "Error": None}).encode() + b"\n"
                            other.write(f"{len(b):x}\r\n".encode() + b + b"\r\n0\r\n\r\n")
                        other.close()
                    waiting.clear()
                else:
                    w.write(reply("404 Not Found", b'{"message":"not in the stand-in"}'))
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            w.close()

    if os.path.exists(path):
        os.unlink(path)
    server = await asyncio.start_unix_server(handle, path)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
