"""An echo server on Python's `websockets`, for testing wsdriver's client: listens on a
free loopback port, prints "PORT <n>", echoes every message, selects the first
subprotocol the client offers among echo.v2 and echo.v1, accepts permessage-deflate (the
library's default), and exits when its standard input closes."""
import asyncio
import sys

from websockets.asyncio.server import serve

SUPPORTED = ["echo.v2", "echo.v1"]


def select_subprotocol(connection, offered):
    return next((p for p in offered if p in SUPPORTED), None)


async def echo(ws):
    async for message in ws:
        await ws.send(message)


async def main():
    async with serve(echo, "127.0.0.1", 0, subprotocols=SUPPORTED, select_subprotocol=select_subprotocol, max_size=64 << 20) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print("PORT %d" % port, flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until standard input closes


asyncio.run(main())
