"""python -m services.router: run the router with settings from the environment (RCTC_...)."""

from services.common.runner import main
from services.router.service import build
from services.router.settings import RouterSettings

if __name__ == "__main__":
    main("router", RouterSettings, build)
