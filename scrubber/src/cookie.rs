//! cookie (being written)
