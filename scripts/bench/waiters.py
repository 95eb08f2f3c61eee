"""Opens N connections to the API, each asking `GET /work/{id}` with `Prefer: wait=W` on one
pending work, and keeps them waiting; prints "waiting N" once every request is sent, then waits
for every answer (the caller finishes the work meanwhile) and prints how many came back done.

Usage: waiters.py PORT WORK_ID N WAIT_SECONDS
"""
import asyncio
import json
import sys


async def one(port, work_id, wait, opened, answers):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /work/{work_id} HTTP/1.1\r\nHost: 127.0.0.1\r\nPrefer: wait={wait}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    await writer.drain()
    opened.append(1)
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1] if head else b"none"
    done = False
    if status == b"200":
        try:
            done = json.loads(body)["done"]
        except (ValueError, KeyError):
            pass
    answers.append((status, done))


async def main():
    port, work_id, count, wait = (int(arg) for arg in sys.argv[1:5])
    opened, answers = [], []
    tasks = []
    # Connections are opened in steps, so the listen backlog never overflows.
    for start in range(0, count, 500):
        for _ in range(start, min(count, start + 500)):
            tasks.append(asyncio.create_task(one(port, work_id, wait, opened, answers)))
        while len(opened) < min(count, start + 500):
            await asyncio.sleep(0.01)
    print(f"waiting {len(opened)}", flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=wait + 60)
    statuses = {}
    for status, _ in answers:
        statuses[status.decode()] = statuses.get(status.decode(), 0) + 1
    done = sum(1 for _, was_done in answers if was_done)
    print(f"answered {len(answers)} statuses {statuses} done {done}", flush=True)


asyncio.run(main())
