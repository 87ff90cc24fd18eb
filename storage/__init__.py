"""Storage both server sides share: tables, engine and sessions, the audit chain, the evidence
store, the routing port and the schema migrations. Imports no other server package."""
