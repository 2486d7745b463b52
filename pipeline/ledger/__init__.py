"""The database: schema and the only code that writes its tables; export and status."""
