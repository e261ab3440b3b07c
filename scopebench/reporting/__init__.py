"""The `scopebench report` stage: joined tables, rich / markdown / csv / json / html output, plots."""
