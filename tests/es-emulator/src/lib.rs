//! An Elasticsearch 8 REST emulator for tests, held honest by the official spec and clients.
