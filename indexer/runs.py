"""What one row of page_runs (and kernel_maps) may cover: imported by the walk, the store's
schema and the query side alike (no dependencies, so the CLI stays light)."""

# The most pages one run covers, whatever the page size: the views expand a run into pages
# through page_numbers 0..511 (migration 0002), and a lookup by physical address or swap
# offset scans back at most this far. A leaf bigger than this (a 2 MiB PMD of 4 KiB pages
# is exactly one run; 16 KiB pages: a 32 MiB PMD = 2048 pages; a 1 GiB PUD) is stored as
# several runs.
MAX_RUN_PAGES = 512
