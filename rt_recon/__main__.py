from rt_recon.cli import main

raise SystemExit(main())
