"""Jobs: what a `run` or `nightly` does around the Beam graph — owning the output prefix,
holding its lease, planning, launching, and the publication step the graph ends with."""
