"""Head-to-head macro benchmark: tokenway against a direct fake upstream and nginx.

`python -m bench run` starts a fake provider (`bench.fake_upstream`), puts each target
(`bench.targets`) in front of it, drives load with wrk (or `bench.loadgen`) and the SSE
client (`bench.sse_client`), and writes a table plus a JSON file in `bench/results/`.
See bench/README.md for what each figure means.
"""
