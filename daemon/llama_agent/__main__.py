import sys

from llama_agent.cli import main

sys.exit(main())
