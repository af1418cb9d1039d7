"""What every RCTC service needs: records and their Avro codec, Kafka clients, settings, logging, the
health/metrics server, the service runner and the live registry view.

Nothing here reads the environment: settings are built at each service's edge and passed in.
"""
