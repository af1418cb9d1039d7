"""The gateway: the public HTTP API through which agencies submit alerts and acknowledgements."""
