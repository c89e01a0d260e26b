"""vmdex ingest: everything that touches a dump file or a vmlinux."""
