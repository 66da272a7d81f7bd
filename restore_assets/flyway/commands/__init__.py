"""Flyway's commands, one module each, as functions of the config and a connection factory.

`migration_info` decides, `database`/`history` talk to PostgreSQL; these modules put the two
together in the order Flyway does. `engine.Flyway` is the facade the rest of the project calls.
"""
