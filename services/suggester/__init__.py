"""The suggester service: turns experiment state into suggestions with a pure optimizer."""
