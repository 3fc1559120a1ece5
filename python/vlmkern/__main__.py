from vlmkern.cli import main

raise SystemExit(main())
