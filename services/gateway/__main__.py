"""python -m services.gateway: run the gateway with settings from the environment (RCTC_...)."""

from services.common.runner import main
from services.gateway.service import build
from services.gateway.settings import GatewaySettings

if __name__ == "__main__":
    main("gateway", GatewaySettings, build)
