"""Runs the interop checks with Python's `websockets` client.

    python python_client.py ws://127.0.0.1:PORT
"""
import asyncio
import sys

from websockets.asyncio.client import connect

LIMIT = 60


def pattern(n, step):
    return bytes((i * step) % 251 for i in range(n))


async def echo(ws, message, what):
    await ws.send(message)
    got = await asyncio.wait_for(ws.recv(), LIMIT)
    if got != message:
        raise AssertionError("%s: echo differs (%d vs %d)" % (what, len(got), len(message)))


async def text_multibyte(ws):
    await echo(ws, "héllo wörld — ✓ 𝄞 ∑ 日本語", "text")


async def binary_all_bytes(ws):
    await echo(ws, bytes(range(256)), "binary")


async def empty(ws):
    await echo(ws, "", "empty text")
    await echo(ws, b"", "empty binary")


async def boundaries(ws):
    for n in (125, 126, 127, 65535, 65536, 65537):
        await echo(ws, pattern(n, 7), "binary of %d" % n)
        await echo(ws, "x" * n, "text of %d" % n)


async def sixteen_mib(ws):
    await echo(ws, pattern(16 << 20, 3), "16 MiB")


async def pipelined(ws):
    for i in range(1000):
        await ws.send("message %d" % i)
    for i in range(1000):
        got = await asyncio.wait_for(ws.recv(), LIMIT)
        if got != "message %d" % i:
            raise AssertionError("pipelined %d: got %r" % (i, got[:40]))


CHECKS = [
    ("text with multi-byte UTF-8", text_multibyte),
    ("binary with every byte value", binary_all_bytes),
    ("empty messages", empty),
    ("length boundaries 125/126/65535/65536", boundaries),
    ("a 16 MiB message", sixteen_mib),
    ("1000 pipelined messages in order", pipelined),
]


async def main(base):
    for name, check in CHECKS:
        async with connect(base + "/interop", max_size=None, open_timeout=LIMIT) as ws:
            await check(ws)
        print("python websockets: ok", name, flush=True)

    async with connect(base + "/deflate", max_size=None, open_timeout=LIMIT) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        if not extensions.startswith("permessage-deflate"):
            raise AssertionError("permessage-deflate not negotiated: %r" % extensions)
        await echo(ws, "".join('{"id":%d,"name":"user %d"},' % (i, i) for i in range(5000)), "compressible text")
    print("python websockets: ok permessage-deflate negotiated", flush=True)

    async with connect(base + "/sub", subprotocols=["x.unknown", "echo.v1", "echo.v2"], open_timeout=LIMIT) as ws:
        if ws.subprotocol != "echo.v1":
            raise AssertionError("subprotocol: got %r" % ws.subprotocol)
    print("python websockets: ok subprotocol selection", flush=True)

    ws = await connect(base + "/close", open_timeout=LIMIT)
    await asyncio.wait_for(ws.close(code=4001, reason="done here"), LIMIT)
    # close_code is the code of the Close frame the server sent back.
    if ws.close_code != 4001:
        raise AssertionError("close: received code %r" % (ws.close_code,))
    print("python websockets: ok close with code and reason", flush=True)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1]))
    except Exception as e:  # report any failure as one line, exit non-zero
        print("python websockets: FAILED: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        sys.exit(1)
