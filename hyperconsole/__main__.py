from hyperconsole.cli import main

raise SystemExit(main())
