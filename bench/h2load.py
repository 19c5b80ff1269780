"""HTTP/2 load with nghttp2's h2load, reported like the other drivers.

`python -m bench.h2load --url URL --clients 1 --streams 16 --duration 5 --body-file F`
runs `h2load -c CLIENTS -m STREAMS -D DURATION` (prior-knowledge h2c for http:// URLs,
ALPN h2 for https://) and prints one line `BENCH_RESULT {json}`: requests, req/s, the
latency percentiles from h2load's per-request log (its summary has no percentiles),
non-2xx answers and failed requests.  h2load comes from Debian's `nghttp2-client`
package; `bench run` installs it like wrk when an HTTP/2 group is selected.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

from bench.loadgen import parse_headers, percentiles_ms

# h2load's summary lines (nghttp2 1.52).
_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored, (\d+) timeout")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
# A run that does not end this long after its duration is killed.
SLACK_S = 30.0


def run(url: str, clients: int, streams: int, duration_s: float, body_file: str,
        headers: list[tuple[str, str]]) -> dict:
    with tempfile.TemporaryDirectory(prefix="h2load-") as tmp:
        log = Path(tmp) / "requests.log"
        cmd = ["h2load", "-c", str(clients), "-m", str(streams), "-t", "1",
               "-D", str(max(1, round(duration_s))), "-d", body_file,
               f"--log-file={log}", url]
        for k, v in headers:
            cmd += ["-H", f"{k}: {v}"]
        p = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=duration_s + SLACK_S)
        out = p.stdout
        req = _REQUESTS.search(out)
        st = _STATUS.search(out)
        fin = _FINISHED.search(out)
        if not (req and st and fin):
            raise RuntimeError(f"h2load exited {p.returncode}: {(p.stderr or out)[-300:]}")
        lat_ns = []
        if log.exists():
            for line in log.read_text().splitlines():
                parts = line.split("\t")
                if len(parts) == 3:
                    lat_ns.append(int(parts[2]) * 1000)  # microseconds
    secs = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
    done, ok2xx = int(req.group(3)), int(st.group(1))
    pct = percentiles_ms(lat_ns)
    return {
        "tool": "h2load", "clients": clients, "streams_per_client": streams,
        "reqs": done, "rps": round(done / secs, 2) if secs else 0.0,
        "duration_s": round(secs, 4),
        "p50_ms": pct.get("p50_ms"), "p90_ms": pct.get("p90_ms"),
        "p99_ms": pct.get("p99_ms"), "max_ms": pct.get("max_ms"),
        "non2xx": done - ok2xx, "sockerr": int(req.group(5)) + int(req.group(6)),
        "timeouts": int(req.group(7)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.h2load", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--clients", type=int, default=1, help="HTTP/2 connections")
    ap.add_argument("--streams", type=int, default=16, help="concurrent streams per connection")
    ap.add_argument("--duration", type=float, default=5.0, help="seconds (whole seconds)")
    ap.add_argument("--body-file", required=True)
    ap.add_argument("--header", "-H", action="append", default=[])
    args = ap.parse_args(argv)
    result = run(args.url, args.clients, args.streams, args.duration, args.body_file,
                 parse_headers(args.header))
    sys.stdout.write("BENCH_RESULT " + orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
