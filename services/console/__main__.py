"""python -m services.console: run the operator console with settings from the environment (RCTC_...)."""

from services.common.runner import main
from services.console.service import build
from services.console.settings import ConsoleSettings

if __name__ == "__main__":
    main("console", ConsoleSettings, build)
