"""The control plane: one owner per massager, the typed control API every command
source speaks (:mod:`footctl.control.api`), and the StateHub that streams state
(:mod:`footctl.control.hub`)."""
