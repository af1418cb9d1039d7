"""python -m services.auditor: run the auditor (one replica) with settings from the environment (RCTC_...)."""

from services.auditor.service import build
from services.auditor.settings import AuditorSettings
from services.common.runner import main

if __name__ == "__main__":
    main("auditor", AuditorSettings, build)
