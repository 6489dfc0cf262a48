"""NixOS integration: render/read Nix values, the fragment store, rebuilds, confirm-or-revert.

Public API (all blocking; call from a thread worker in the UI):

- render.render_value / render_fragment / parse / read_meta
- store.FragmentStore (read, prepare, commit, history), ChangeSet.diff()
- rebuild.RebuildRunner.run(action, on_line=..., timeout=..., cancel=...) -> RebuildResult (a
  detached job the caller follows; follow() follows one started elsewhere);
  list_generations, diff_generations, rollback_argvs
- revert.ConfirmOrRevert (apply, confirm, revert_now, rebuild, refuse_if_pending, pending, last_revert)
- nixeval.run / module_expr: nix-instantiate checks of a file or module without nixpkgs

The demo's scratch NixOS dir and stand-in rebuild live in hyperconsole.demo; the command-line
entries (rebuild jobs, the trial process) in hyperconsole.cli.
"""
