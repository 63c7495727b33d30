"""`python -m simulators --scenario simulators/scenarios/demo.yaml --speed 60 ...`"""

from simulators.cli import main

raise SystemExit(main())
