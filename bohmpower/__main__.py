from bohmpower.cli import main

raise SystemExit(main())
