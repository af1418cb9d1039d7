"""python -m services.dispatcher: run the dispatcher with settings from the environment (RCTC_...)."""

from services.common.runner import main
from services.dispatcher.service import build
from services.dispatcher.settings import DispatcherSettings

if __name__ == "__main__":
    main("dispatcher", DispatcherSettings, build)
