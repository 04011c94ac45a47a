"""The scoring core, without HTTP: the contract, the loaded model, the scorer (probabilities,
decisions, reasons). The service, the portfolio job and the challenger all score through it."""
