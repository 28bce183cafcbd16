//! End-to-end tests of kstash with real parts.
