"""The auditor: a tamper-evident, hash-chained audit trail of every sharing decision and delivery."""
