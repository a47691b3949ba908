"""Process attribution (host side): which sandbox process made a flow.

``procfs`` parses what ``/proc`` says (socket tables, status, fds), ``finder`` finds the
process owning a flow's socket given a container's init pid, ``service`` answers the
gateway on a unix socket in the session folder (snitch/core/process.py is the wire).
"""
