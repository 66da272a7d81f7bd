"""`python -m bench [--quick] [--with-2gb] [--sizes MB…] [--pairs N] [--out DIR]`: `make bench`."""

from bench.run import main

raise SystemExit(main())
