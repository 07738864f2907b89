"""``python -m ecgfoundry`` is the ``ecgfoundry`` command."""

from ecgfoundry.cli import main

main()
