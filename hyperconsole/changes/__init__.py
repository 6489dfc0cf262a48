"""Host changes as data: what the console asks for (requests), how an operator without root hands
one to the root request unit (spool), who runs it (submit: directly as root, or through the unit)
and the unit's side (serve)."""
