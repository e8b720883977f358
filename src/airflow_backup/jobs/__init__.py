"""Jobs: engine functions that combine repositories, archiver and storage into one task."""
