"""In-process micro benchmarks of protocols/ (no sockets): `python -m bench micro`."""
