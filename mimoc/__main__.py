from mimoc.cli import main

raise SystemExit(main())
