"""The local machine: metrics, interfaces, systemd. No Textual/Rich here."""
