"""``python -m bertdeploy.cli`` (used by ``torchrun -m bertdeploy.cli.__main__ train ...``)."""

from bertdeploy.cli import main

if __name__ == "__main__":
    main()
