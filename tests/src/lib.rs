//! Shared helpers of the tests: the virtual wire ([`vw`]) and the end-to-end lab ([`e2e`]).

pub mod e2e;
pub mod vw;
