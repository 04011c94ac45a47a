"""Where bulk requests are scored: one low-priority lane per worker."""
