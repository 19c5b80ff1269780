"""tokenway wire formats and translators: pure, sans-IO (bytes and dicts in, bytes and events out)."""
