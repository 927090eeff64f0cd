"""``python -m bertdeploy``."""

from bertdeploy.cli import main

if __name__ == "__main__":
    main()
