"""One module per capability: its wire schema and its class (see `models.catalogue`)."""
