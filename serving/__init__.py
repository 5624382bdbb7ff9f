"""serving package of the Ezhou AI capability hub."""
