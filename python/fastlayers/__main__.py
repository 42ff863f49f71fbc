"""python -m fastlayers info | bench [args] | train-demo"""

from __future__ import annotations

import json
import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv[0] if argv else "info"
    if cmd == "info":
        import fastlayers

        print(json.dumps(fastlayers.info(), indent=2))
        return 0
    if cmd == "train-demo":
        from . import _demo

        return _demo.main(argv[1:])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
