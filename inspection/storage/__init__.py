"""Storage of the inspection daemon: schema, engines/migrations, repository, spool. Light imports only."""
