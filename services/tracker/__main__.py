"""python -m services.tracker: run the tracker with settings from the environment (RCTC_...)."""

from services.common.runner import main
from services.tracker.service import build
from services.tracker.settings import TrackerSettings

if __name__ == "__main__":
    main("tracker", TrackerSettings, build)
