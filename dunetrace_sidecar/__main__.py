from dunetrace_sidecar.cli import main

raise SystemExit(main())
