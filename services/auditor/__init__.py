"""The auditor: a tamper-evident, hash-chained audit trail of every sharing decision, agency by agency, with
the hash of each copy sent (webhook attempts are on deliveries.events, not in the trail)."""
