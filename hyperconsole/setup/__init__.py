"""The first-boot setup wizard's model, with no UI: the steps and their answers (one msgspec
struct per step, saved for resume), validation of every answer against this host, the preflight
checks, the fragments the answers become, the lock-out guard, and applying them on trial.

- answers: the structs, loading an answers file, saving/resuming (0600 under the state dir)
- validate: every answer checked, one `$.path: problem` line each (HostFacts: what was read)
- preflight: the doctor's host checks and the wizard's own (minimums, disk, NICs), on the doctor's runner
- fragments: answers → option trees → one ChangeSet; changed option paths; impact lines
- guard: the lock-out guard (also used by `profile apply` and the Security pane)
- secrets: password hashing (mkpasswd, else SHA-512 crypt) and the hashedPasswordFile
- run: dry-build, then activation on trial (confirm-or-revert)
"""
