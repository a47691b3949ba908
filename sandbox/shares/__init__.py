"""``--share``: host files shown in the sandbox through a FUSE filesystem coderun runs."""
