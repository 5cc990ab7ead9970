"""Other clients' latency while slow clients hold connections to the service (a slowloris), measured in one run.

    .venv/bin/python benchmarks/slow_clients.py [--attackers 200] [--seconds 40] [--requests 400]

The churn XGBoost config is trained (fast mode) and registered in a temporary project, then served by
`ml-project serve` on a free 127.0.0.1 port with its default limits. One keep-alive client sends `--requests`
one-row `/predict` requests with the service idle, then again while `--attackers` connections (at most 200) attack
it for up to `--seconds` (at most 60): half send a request's head one header line per second and never finish it,
half send a whole head and then the body one byte per second; each one cut off by the service reconnects. Reported
beside their references: p99 under attack against 3x the idle p99, the 5xx the service recorded (0), and how the
attackers fared (cut off by the head and body deadlines, not left holding their connections).
"""

import argparse
import asyncio
import re
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from serving import BIN, JSON, free_port, start, stop, trained_churn


def p99_ms(url: str, body: bytes, n: int) -> float:
    with httpx.Client(timeout=30, headers=JSON) as client:
        for _ in range(20):
            client.post(url, content=body).raise_for_status()
        took = []
        for _ in range(n):
            started = time.perf_counter()
            client.post(url, content=body).raise_for_status()
            took.append(time.perf_counter() - started)
    return float(np.percentile(took, 99) * 1e3)


async def attack(port: int, attackers: int, seconds: float, body: bytes, tally: dict):
    "`attackers` slow connections until `seconds` pass; each one the service closes reconnects."
    deadline = time.monotonic() + seconds
    head = b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"

    async def one(k: int):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        tally["connections"] += 1
        slow_body, sent = k % 2 == 1, 0
        writer.write(head + (f"Content-Length: {len(body)}\r\n\r\n".encode() if slow_body else b""))
        try:
            while time.monotonic() < deadline:
                writer.write(body[sent : sent + 1] if slow_body else b"X-Slow: 1\r\n")  # one more piece a second
                sent += 1
                await writer.drain()
                try:
                    await asyncio.wait_for(reader.read(200), 1.0)
                except TimeoutError:
                    continue  # still held: keep trickling
                tally["cut off"] += 1  # the service answered (408) or closed the connection
                return
        except ConnectionError:
            tally["cut off"] += 1
        finally:
            writer.close()

    async def keep(k: int):
        while time.monotonic() < deadline:
            await one(k)

    await asyncio.gather(*(keep(k) for k in range(attackers)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attackers", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--requests", type=int, default=400, help="one-row requests, idle and under attack")
    args = parser.parse_args()
    attackers, seconds = min(args.attackers, 200), min(args.seconds, 60)  # bounded: this is a test, not an attack
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env = trained_churn(tmp, "fast")
        port = free_port()
        server = start(
            [str(BIN / "ml-project"), "serve", "--model", "churn__fast", "--port", str(port)],
            env,
            f"http://127.0.0.1:{port}/ready",
            tmp / "serve.log",
        )
        try:
            url = f"http://127.0.0.1:{port}/predict"
            row = httpx.get(f"http://127.0.0.1:{port}/metadata").json()["example"]
            body = httpx.Request("POST", url, json={"rows": [row]}).content
            idle = p99_ms(url, body, args.requests)
            tally = {"connections": 0, "cut off": 0}
            attacking = threading.Thread(target=asyncio.run, args=(attack(port, attackers, seconds, body, tally),))
            attacking.start()
            time.sleep(min(5.0, seconds / 4))  # every attacker connected and stalling
            under = p99_ms(url, body, args.requests)
            attacking.join()
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        finally:
            stop(server)
        server_errors = sum(
            float(v) for v in re.findall(r'mlp_requests_total\{endpoint="[^"]*",status="5\d\d"\} ([0-9.e+]+)', metrics)
        )
        print(f"{attackers} slow clients for {seconds:.0f} s; {args.requests} one-row requests from one other client")
        print(f"  p99 idle            {idle:7.2f} ms")
        print(
            f"  p99 under attack    {under:7.2f} ms   reference <= 3x idle = {3 * idle:.2f} ms  ratio {under / idle:.2f}x"
        )
        print(f"  5xx recorded        {server_errors:7.0f}      reference 0")
        print(f"  attackers' connections {tally['connections']}, cut off by the service {tally['cut off']}")


if __name__ == "__main__":
    main()
