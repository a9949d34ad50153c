"""The GitHub pull-request bot (`mulligan ci`)."""
