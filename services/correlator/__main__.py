"""python -m services.correlator: run the correlator with settings from the environment (RCTC_...)."""

from services.common.runner import main
from services.correlator.service import build
from services.correlator.settings import CorrelatorSettings

if __name__ == "__main__":
    main("correlator", CorrelatorSettings, build)
