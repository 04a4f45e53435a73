"""The extraction job: plan a run, prepare its store, run the pending units (here, on dask, or as
one static shard), and summarise what was done."""
