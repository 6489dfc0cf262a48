"""Backups: consistent VM reads into restic, retention, restore, restore tests."""
