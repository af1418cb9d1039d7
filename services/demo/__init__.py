"""Demo webhook receivers and a demo alert feed, for `make run` and the tests."""
