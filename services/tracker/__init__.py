"""The tracker: per-(alert, recipient) state, acknowledgements, and the status queries the gateway forwards."""
