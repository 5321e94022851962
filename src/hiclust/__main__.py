import sys

from hiclust.cli import main

sys.exit(main())
