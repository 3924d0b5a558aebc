import sys

from mpe_ssl.cli import main

sys.exit(main())
