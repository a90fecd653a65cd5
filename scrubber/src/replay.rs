//! replay (being written)
