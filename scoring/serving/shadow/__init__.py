"""The challenger in shadow: scored on the champion's rows off the answer's path, and the two
compared in metrics."""
