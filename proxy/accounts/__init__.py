"""Accounts: users, hashed API keys, their limits and budgets, prices and cost.

- ``keys``: making keys, their hashes and public ids (no I/O).
- ``model``: the plain records (``User``, ``ApiKey``, ``Limits``) and the checks
  on their fields, shared by the CLI, the admin API and the daemon.
- ``store``: the accounts tables in the ledger's database (``AccountStore``),
  used by the ``gateway`` CLI, the admin API (on a worker thread) and the
  daemon's sync thread; never from the event loop.
- ``directory``: what the event loop asks per request: the key a request
  presents, looked up in memory (no database round trip).
- ``sync``: the thread that keeps the directory and the spend figures current.
- ``meter``: requests and tokens per minute, budgets, checked at admission and
  settled when the request ends.

Data lives in the same SQLite file as the ledger (its migrations are in
``proxy/ledger/schema.py``), so ``gateway`` and ``gatewayd`` share it through
``--db`` / ``TOKENWAY_DB``.
"""
