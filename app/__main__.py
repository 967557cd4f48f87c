"""`python -m app` is the `custom-llm-proxy` command."""

import sys

from app.cli import main

sys.exit(main())
