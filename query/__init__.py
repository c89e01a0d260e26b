"""vmdex answers: read the index only, never a dump or a vmlinux."""
