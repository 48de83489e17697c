"""`python -m bench.load` (or `make load`): the load run; see bench/load/run.py.

gevent patches the standard library before anything else is imported (Locust would do it on its
import, too late for modules imported before it: ssl, sockets, threads)."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402

from bench.load.run import main  # noqa: E402

sys.exit(main())
