"""python -m services.enricher: run the enricher with settings from the environment (RCTC_...)."""

from services.common.runner import main
from services.enricher.service import build
from services.enricher.settings import EnricherSettings

if __name__ == "__main__":
    main("enricher", EnricherSettings, build)
