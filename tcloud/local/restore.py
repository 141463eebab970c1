"""``deploy.sh restore``: not available yet."""

import sys

if __name__ == "__main__":
    print("deploy.sh restore: not available yet (see README: what does not work yet)", file=sys.stderr)
    sys.exit(2)
