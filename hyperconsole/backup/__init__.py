"""VM backups: jobs (a NixOS fragment), consistent VM reads into restic, retention, restore, tests."""
