# N listeners on one stream over plain HTTP or HTTPS (Python asyncio + OpenSSL), for
# scripts/https-cpu.sh. Usage: https-listeners.py HOST PORT N SECONDS plain|tls CA.pem
# Prints "start" when counting begins (after the ramp) and "bytes N" at the end.
import asyncio, ssl, sys, time
host, port, n, secs, use_tls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "tls"
total = 0
counting = False
async def one(ctx):
    global total
    try:
        r, w = await asyncio.open_connection(host, port, ssl=ctx, server_hostname="localhost" if ctx else None)
        w.write(b"GET /stream HTTP/1.0\r\nHost: localhost\r\n\r\n")
        while True:
            d = await r.read(65536)
            if not d: return
            if counting: total += len(d)
    except Exception as e:
        print("err", e, file=sys.stderr)
async def main():
    global counting
    ctx = None
    if use_tls:
        ctx = ssl.create_default_context(cafile=sys.argv[6])
    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one(ctx)))
        if i % 100 == 99: await asyncio.sleep(0.2)
    await asyncio.sleep(3)
    counting = True
    print("start", flush=True)
    await asyncio.sleep(secs)
    counting = False
    print("bytes", total, flush=True)
    for t in tasks: t.cancel()
asyncio.run(main())
