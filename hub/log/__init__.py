"""The durable event log: tables, the EventLog store and the group-committing LogWriter."""
