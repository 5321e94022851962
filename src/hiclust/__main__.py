import sys

from hiclust.cli import main

if __name__ == "__main__":  # `python -m hiclust`; importing this module (doctest collection) runs nothing
    sys.exit(main())
