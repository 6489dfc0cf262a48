"""libvirt side of hyperconsole: connection, models, sampling, operations. No Textual/Rich here."""
