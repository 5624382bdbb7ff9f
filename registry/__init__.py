"""registry package of the Ezhou AI capability hub."""
