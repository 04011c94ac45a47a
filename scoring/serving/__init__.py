"""The request path, by concern: edge/ (HTTP: settings, start-up, guard, refusals, routes of its
own), forms/ (request bodies → the model's matrix), batching/ (the bulk lane), monitoring/
(drift and metrics). Scoring itself lives below, in scoring/core/."""
