"""Request bodies (JSON records, compact tables, Arrow streams, files) → the matrix the model
scores, by the contract in scoring/core/."""
