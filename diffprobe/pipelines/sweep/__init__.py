"""The sweep job: one probe per (t, block, pool) key of a store, a tidy table, the best keys and the
paper-style plots."""
