"""The dispatcher: delivers recipients' copies to their webhooks, signed per Standard Webhooks."""
