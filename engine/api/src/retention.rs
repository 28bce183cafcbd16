//! (being written: pure helpers owner)
