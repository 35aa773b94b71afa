"""`python -m cloudml_trainer ...` (the command cloudml's workload templates run)."""

import sys

from cloudml_trainer.cli import main

if __name__ == "__main__":
    sys.exit(main())
