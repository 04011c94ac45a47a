"""Re-scoring a whole portfolio on Apache Spark with the imported model, answer for answer as the
service gives it: `python -m scoring.portfolio --input PATH --output PATH` (see the README)."""
