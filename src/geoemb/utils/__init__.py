"""Small shared utilities (atomic file output, run logging, seeding)."""
