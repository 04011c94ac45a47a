"""Request bounds' defaults: the settings read them (SCORING_MAX_BODY_BYTES), and so do the
forms when called outside a server (benchmarks, tests), so the number is written once."""

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
