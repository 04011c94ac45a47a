from scoring.portfolio.cli import main

raise SystemExit(main())
